import { createHmac } from 'node:crypto'
import { deriveKey, type KeyRing, open, seal } from '../../infra/blobstore/keys.ts'
import { openSourceWith, type SealedSource, sealSource } from '../../infra/keystore/sealed-source.ts'

// E-mail addresses and the names people give their households are personal data (R12). Events
// carry only a keyed lookup hash of the address and the data sealed with its person's own key;
// shredding that key (KeyRing.shred) erases it from the whole history while the hash chain over
// the events stays verifiable.

/** what is shown in place of a value whose person was erased (its key shredded) */
export const ERASED = '[erased]'

export function normaliseEmail(email: string): string {
  return email.normalize('NFKC').trim().toLowerCase()
}

/** the keyed lookup hash of an address (what `emailHash` in events is): no person key needed */
export function emailLookupHash(masterKey: Buffer, email: string): string {
  return createHmac('sha256', deriveKey(masterKey, 'email-lookup')).update(normaliseEmail(email)).digest('hex')
}

export class EmailProtector {
  private readonly lookupKey: Buffer

  constructor(
    masterKey: Buffer,
    private readonly personKeys: KeyRing,
  ) {
    this.lookupKey = deriveKey(masterKey, 'email-lookup')
  }

  hash(email: string): string {
    return createHmac('sha256', this.lookupKey).update(normaliseEmail(email)).digest('hex')
  }

  async seal(accountId: string, email: string): Promise<string> {
    return seal(
      await this.personKeys.keyFor(accountId),
      Buffer.from(normaliseEmail(email)),
      `email:${accountId}`,
    ).toString('base64')
  }

  /** the address, or undefined once the person's key is shredded */
  async open(accountId: string, sealed: string): Promise<string | undefined> {
    const key = await this.personKeys.existingKey(accountId)
    return key === undefined
      ? undefined
      : open(key, Buffer.from(sealed, 'base64'), `email:${accountId}`).toString('utf8')
  }
}

/** where a person's own action came from, in the event's metadata (docs/EVENTS.md): the address
 * sealed with their key, and a tag that tells their addresses apart (the monitor counts the
 * distinct addresses an account logs in from, R11) without showing them; both mean nothing once
 * the key is shredded. The same shape as a paired toy's address (infra/keystore/sealed-source.ts). */
export type { SealedSource }

/** Other personal data in events, sealed with its person's key and bound to what it describes
 * (`label`, e.g. `household-name:{householdId}`), so a sealed value cannot be moved elsewhere. */
export class PersonalData {
  constructor(private readonly personKeys: KeyRing) {}

  async seal(personId: string, label: string, value: string): Promise<string> {
    return seal(await this.personKeys.keyFor(personId), Buffer.from(value), label).toString('base64')
  }

  async source(personId: string, ip: string): Promise<SealedSource> {
    return sealSource(await this.personKeys.keyFor(personId), personId, ip)
  }

  /** the address of SealedSource.sourceIpSealed, or undefined once the person's key is shredded */
  async openSource(personId: string, sealed: string): Promise<string | undefined> {
    const key = await this.personKeys.existingKey(personId)
    return key === undefined ? undefined : openSourceWith(key, personId, sealed)
  }

  /** erasure (R12): everything sealed with the person's key is unreadable from now on */
  async shred(personId: string): Promise<void> {
    await this.personKeys.shred(personId)
  }

  /** the value, or undefined once the person's key is shredded */
  async open(personId: string, label: string, sealed: string): Promise<string | undefined> {
    const key = await this.personKeys.existingKey(personId)
    return key === undefined ? undefined : open(key, Buffer.from(sealed, 'base64'), label).toString('utf8')
  }
}
