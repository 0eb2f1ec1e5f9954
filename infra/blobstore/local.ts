import { createHmac, timingSafeEqual } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { KennelError } from '../errors.ts'
import { deriveKey, KeyRing, open, seal } from './keys.ts'
import { OBJECT_KEY_PATTERN, type BlobMethod, type BlobStat, type BlobStore, type PresignedUrl, type PresignRequest } from './port.ts'

// The embedded blob store (R12): each object is sealed with AES-256-GCM under its household's
// data key (wrapped by the master key, infra/blobstore/keys.ts), the object key as AAD so files
// cannot be swapped. Its URLs are HMAC-signed over method, key, household, content type, size
// and expiry, and are served by the API (api/blobs/routes.ts) through `receive` and `send`.

const KEY = new RegExp(OBJECT_KEY_PATTERN)

export interface LocalBlobStoreOptions {
  dir: string
  masterKey: Buffer
  now?: () => Date
}

export interface SignedParams {
  householdId: string
  contentType: string
  bytes: number
  expires: number
  sig: string
}

interface ObjectMeta {
  householdId: string
  contentType: string
  size: number
}

export class LocalBlobStore implements BlobStore {
  readonly kind = 'local' as const
  private readonly signingKey: Buffer
  private readonly keys: KeyRing
  private readonly objects: string
  private readonly now: () => Date

  constructor(opts: LocalBlobStoreOptions) {
    this.signingKey = deriveKey(opts.masterKey, 'blob-url-signing')
    this.keys = new KeyRing(path.join(opts.dir, 'keys'), opts.masterKey, 'household-data')
    this.objects = path.join(opts.dir, 'objects')
    this.now = opts.now ?? (() => new Date())
  }

  async presign(r: PresignRequest): Promise<PresignedUrl> {
    assertKey(r.key)
    const expires = Math.floor(this.now().getTime() / 1000) + r.ttlSeconds
    const contentType = r.method === 'PUT' ? (r.contentType ?? 'application/octet-stream') : ''
    const bytes = r.method === 'PUT' ? (r.bytes ?? 0) : 0
    const sig = this.sign(r.method, r.key, r.householdId, contentType, bytes, expires)
    const q = `h=${encodeURIComponent(r.householdId)}&ct=${encodeURIComponent(contentType)}&len=${bytes}&expires=${expires}&sig=${sig}`
    return {
      method: r.method,
      url: `/v1/blobs/${r.key}?${q}`,
      headers: r.method === 'PUT' ? { 'content-type': contentType } : {},
      expiresAt: new Date(expires * 1000).toISOString(),
    }
  }

  /** PUT through a signed URL: verify, then seal and store the body. */
  async receive(key: string, p: SignedParams, contentType: string | undefined, body: Buffer): Promise<void> {
    this.verify('PUT', key, p)
    if ((contentType ?? '').split(';')[0]!.trim().toLowerCase() !== p.contentType) {
      throw new KennelError('KENNEL_ERR_URL_SIGNATURE', `this URL is signed for Content-Type ${p.contentType}`)
    }
    if (body.length !== p.bytes) throw new KennelError('KENNEL_ERR_RECORDING_SIZE_MISMATCH', `this URL is signed for exactly ${p.bytes} bytes, got ${body.length}`)
    const dataKey = this.keys.keyFor(p.householdId)
    await fs.mkdir(this.objects, { recursive: true, mode: 0o700 })
    const meta: ObjectMeta = { householdId: p.householdId, contentType: p.contentType, size: body.length }
    const tmp = `${this.file(key)}.${process.pid}.${Date.now()}.tmp`
    await fs.writeFile(tmp, seal(dataKey, body, key), { mode: 0o600 })
    await fs.writeFile(`${this.file(key)}.json`, JSON.stringify(meta), { mode: 0o600 })
    await fs.rename(tmp, this.file(key))
  }

  /** GET through a signed URL: verify, then open the sealed object. */
  async send(key: string, p: SignedParams): Promise<{ body: Buffer; contentType: string }> {
    this.verify('GET', key, p)
    const meta = await this.meta(key)
    if (!meta || meta.householdId !== p.householdId) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such object')
    const dataKey = this.keys.existingKey(meta.householdId)
    if (!dataKey) throw new KennelError('KENNEL_ERR_KEY_SHREDDED', 'the key of this object was erased')
    return { body: open(dataKey, await fs.readFile(this.file(key)), key), contentType: meta.contentType }
  }

  async stat(key: string): Promise<BlobStat | undefined> {
    assertKey(key)
    const meta = await this.meta(key)
    if (!meta) return undefined
    try {
      await fs.access(this.file(key))
    } catch {
      return undefined
    }
    return { size: meta.size }
  }

  async close(): Promise<void> {}

  private verify(method: BlobMethod, key: string, p: SignedParams): void {
    assertKey(key)
    const expected = Buffer.from(this.sign(method, key, p.householdId, p.contentType, p.bytes, p.expires))
    const given = Buffer.from(p.sig)
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new KennelError('KENNEL_ERR_URL_SIGNATURE', 'the URL signature does not match this object and method')
    }
    // checked after the signature so that an attacker cannot extend `expires` (R5)
    if (this.now().getTime() / 1000 > p.expires) throw new KennelError('KENNEL_ERR_URL_EXPIRED', 'this URL has expired; ask for a new one')
  }

  private sign(method: BlobMethod, key: string, householdId: string, contentType: string, bytes: number, expires: number): string {
    return createHmac('sha256', this.signingKey).update([method, key, householdId, contentType, bytes, expires].join('\n')).digest('base64url')
  }

  private async meta(key: string): Promise<ObjectMeta | undefined> {
    try {
      return JSON.parse(await fs.readFile(`${this.file(key)}.json`, 'utf8')) as ObjectMeta
    } catch {
      return undefined
    }
  }

  private file(key: string): string {
    return path.join(this.objects, key)
  }
}

function assertKey(key: string): void {
  if (!KEY.test(key)) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such object')
}
