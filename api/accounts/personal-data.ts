import { createHmac } from 'node:crypto'
import { deriveKey, type KeyRing, seal } from '../../infra/blobstore/keys.ts'

// E-mail addresses are personal data (R12). Events carry only a keyed lookup hash and the
// address sealed with the account's own key; shredding that key (KeyRing.shred) erases the
// address from the whole history while the hash chain over the events stays verifiable.

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
}
