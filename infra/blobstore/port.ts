import { randomBytes } from 'node:crypto'

// The blob-store port (R5, R12, R13): objects are written and read only through presigned URLs
// that expire and are bound to one object and one method. An upload URL writes its object once:
// the embedded store refuses a second PUT, S3 a conditional write (`If-None-Match: *`), so an
// object that was checked at completion cannot be replaced behind it. Two adapters, one contract
// suite (test/infra/blobstore/contract.ts): the embedded encrypted store (local.ts) and S3 (s3.ts).

export type BlobMethod = 'PUT' | 'GET'

export interface PresignRequest {
  method: BlobMethod
  key: string
  ttlSeconds: number
  /** whose data key encrypts the object (embedded store) */
  householdId: string
  /** PUT: the content type the upload must carry */
  contentType?: string
  /** PUT: the exact size the upload must have */
  bytes?: number
  /** PUT: the SHA-256 (lowercase hex) the client declared; an upload with other bytes is refused */
  sha256?: string
  /** whom the URL is issued to (`cert:{serial}`, `token:{sessionId}`): the embedded store signs
   * it into the URL so that the API can check, when the URL is used, that this credential was not
   * revoked since (R3). S3 serves its URLs itself and never sees it. */
  credential?: string
}

export interface PresignedUrl {
  method: BlobMethod
  /** absolute for S3; for the embedded store a path the API serves (`/v1/blobs/...`) */
  url: string
  /** headers the client must send with the request (they are part of the signature) */
  headers: Record<string, string>
  expiresAt: string
}

/** what is stored under a key, read back from the bytes themselves */
export interface BlobStat {
  size: number
  /** SHA-256 of the content (the plaintext, for the embedded store), lowercase hex */
  sha256: string
}

export interface BlobStore {
  readonly kind: 'local' | 's3'
  presign(request: PresignRequest): Promise<PresignedUrl>
  stat(key: string): Promise<BlobStat | undefined>
  /** delete an object (erasure, retention: R12); nothing happens when there is none */
  delete(key: string): Promise<void>
  /** forget the household's data key where the store keeps one: the embedded store's objects
   * sealed with it become unreadable (crypto-shredding, R12). S3 encrypts with the bucket's KMS
   * key, which is not the household's: there, deleting the objects is the erasure. */
  shredHousehold(householdId: string): Promise<void>
  close(): Promise<void>
}

/** 160 random bits, hex: never guessable, but never the only protection either (R13). */
export function newObjectKey(): string {
  return `rec-${randomBytes(20).toString('hex')}`
}

export const OBJECT_KEY_PATTERN = '^rec-[0-9a-f]{40}$'
