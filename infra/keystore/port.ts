// The key-store port (R12): where the data keys of infra/blobstore/keys.ts KeyRing are kept,
// always wrapped by the master key, which never leaves the process. Two adapters, one contract
// suite (test/infra/keystore/contract.ts): files in the data dir (files.ts, the embedded
// deployment) and a table in the event store's PostgreSQL schema (postgres.ts, every node of a
// cluster reads and shreds the same keys).
//
// Shredding leaves a tombstone: a shredded owner is never given a new key, by this process or
// any other, so data sealed after an erasure cannot quietly become readable again.

/** the rings kennel keeps: per-person keys (e-mail, household names, source addresses) and
 * per-household data keys (the embedded blob store's recordings) */
export type KeyRingName = 'person' | 'household-data'

export type StoredKey = { state: 'live'; wrapped: Buffer } | { state: 'shredded' }

export interface KeyStore {
  readonly kind: 'files' | 'postgres'
  /** how long a KeyRing may keep using a key it read here before reading it again: the bound on
   * how late a shred made by another process takes effect in this one (0: read on every use) */
  readonly recheckMs: number
  /** the owner's stored key, or undefined when there never was one */
  read(ring: KeyRingName, owner: string): Promise<StoredKey | undefined>
  /** store `wrapped` as the owner's key unless one is stored or was shredded, and return what is
   * stored: of two processes creating at once, both get the same key */
  create(ring: KeyRingName, owner: string, wrapped: Buffer): Promise<StoredKey>
  /** delete the owner's key and keep a tombstone (idempotent) */
  shred(ring: KeyRingName, owner: string): Promise<void>
  close(): Promise<void>
}
