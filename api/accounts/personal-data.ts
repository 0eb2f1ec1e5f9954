import { createHmac } from 'node:crypto'
import { deriveKey, type KeyRing, open, seal } from '../../infra/blobstore/keys.ts'

// E-mail addresses and the names people give their households are personal data (R12). Events
// carry only a keyed lookup hash of the address and the data sealed with its person's own key;
// shredding that key (KeyRing.shred) erases it from the whole history while the hash chain over
// the events stays verifiable.

/** what is shown in place of a value whose person was erased (its key shredded) */
export const ERASED = '[erased]'

export function normaliseEmail(email: string): string {
  return email.normalize('NFKC').trim().toLowerCase()
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

  seal(accountId: string, email: string): string {
    return seal(this.personKeys.keyFor(accountId), Buffer.from(normaliseEmail(email)), `email:${accountId}`).toString('base64')
  }

  /** the address, or undefined once the person's key is shredded */
  open(accountId: string, sealed: string): string | undefined {
    const key = this.personKeys.existingKey(accountId)
    return key === undefined ? undefined : open(key, Buffer.from(sealed, 'base64'), `email:${accountId}`).toString('utf8')
  }
}

/** Other personal data in events, sealed with its person's key and bound to what it describes
 * (`label`, e.g. `household-name:{householdId}`), so a sealed value cannot be moved elsewhere. */
export class PersonalData {
  constructor(private readonly personKeys: KeyRing) {}

  seal(personId: string, label: string, value: string): string {
    return seal(this.personKeys.keyFor(personId), Buffer.from(value), label).toString('base64')
  }

  /** erasure (R12): everything sealed with the person's key is unreadable from now on */
  shred(personId: string): void {
    this.personKeys.shred(personId)
  }

  /** the value, or undefined once the person's key is shredded */
  open(personId: string, label: string, sealed: string): string | undefined {
    const key = this.personKeys.existingKey(personId)
    return key === undefined ? undefined : open(key, Buffer.from(sealed, 'base64'), label).toString('utf8')
  }
}
