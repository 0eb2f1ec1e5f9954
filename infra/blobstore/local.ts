import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { KennelError } from '../errors.ts'
import { FileKeyStore } from '../keystore/files.ts'
import { deriveKey, KeyRing, open, seal } from './keys.ts'
import {
  OBJECT_KEY_PATTERN,
  type BlobMethod,
  type BlobStat,
  type BlobStore,
  type PresignedUrl,
  type PresignRequest,
} from './port.ts'

// The embedded blob store (R12): each object is sealed with AES-256-GCM under its household's
// data key (wrapped by the master key, infra/blobstore/keys.ts), the object key as AAD so files
// cannot be swapped. Its URLs are HMAC-signed over method, key, household, content type, size,
// declared SHA-256, the credential they were issued to and expiry, and are served by the API
// (api/blobs/routes.ts) through `verify`, `receive` and `send`. An upload URL writes once.

const KEY = new RegExp(OBJECT_KEY_PATTERN)

export interface LocalBlobStoreOptions {
  dir: string
  masterKey: Buffer
  /** the household data keys; default: files in <dir>/keys (one machine) */
  keys?: KeyRing
  now?: () => Date
}

export interface SignedParams {
  householdId: string
  contentType: string
  bytes: number
  /** PUT: the declared SHA-256, or '' */
  sha256: string
  /** whom the URL was issued to, or '' (PresignRequest.credential) */
  credential: string
  expires: number
  sig: string
}

interface ObjectMeta {
  householdId: string
  contentType: string
  size: number
}

const sha256Hex = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

export class LocalBlobStore implements BlobStore {
  readonly kind = 'local' as const
  private readonly signingKey: Buffer
  private readonly keys: KeyRing
  private readonly objects: string
  private readonly now: () => Date

  constructor(opts: LocalBlobStoreOptions) {
    this.signingKey = deriveKey(opts.masterKey, 'blob-url-signing')
    this.keys =
      opts.keys ??
      new KeyRing(new FileKeyStore({ 'household-data': path.join(opts.dir, 'keys') }), opts.masterKey, 'household-data')
    this.objects = path.join(opts.dir, 'objects')
    this.now = opts.now ?? (() => new Date())
  }

  async presign(r: PresignRequest): Promise<PresignedUrl> {
    assertKey(r.key)
    const expires = Math.floor(this.now().getTime() / 1000) + r.ttlSeconds
    const contentType = r.method === 'PUT' ? (r.contentType ?? 'application/octet-stream') : ''
    const bytes = r.method === 'PUT' ? (r.bytes ?? 0) : 0
    const sha256 = r.method === 'PUT' ? (r.sha256 ?? '') : ''
    const credential = r.credential ?? ''
    const sig = this.sign(r.method, r.key, {
      householdId: r.householdId,
      contentType,
      bytes,
      sha256,
      credential,
      expires,
    })
    const optional = `${sha256 ? `&sha=${sha256}` : ''}${credential ? `&cred=${encodeURIComponent(credential)}` : ''}`
    const q = `h=${encodeURIComponent(r.householdId)}&ct=${encodeURIComponent(contentType)}&len=${bytes}${optional}&expires=${expires}&sig=${sig}`
    return {
      method: r.method,
      url: `/v1/blobs/${r.key}?${q}`,
      headers: r.method === 'PUT' ? { 'content-type': contentType } : {},
      expiresAt: new Date(expires * 1000).toISOString(),
    }
  }

  /** PUT through a signed URL: verify, check the body against what the URL was signed for, then
   * seal and store it, once: a second PUT of the same key is refused (KENNEL_ERR_URL_USED). */
  async receive(key: string, p: SignedParams, contentType: string | undefined, body: Buffer): Promise<BlobStat> {
    this.verify('PUT', key, p)
    if ((contentType ?? '').split(';')[0]!.trim().toLowerCase() !== p.contentType) {
      throw new KennelError('KENNEL_ERR_URL_SIGNATURE', `this URL is signed for Content-Type ${p.contentType}`, {
        reason: 'content-type-mismatch',
      })
    }
    if (body.length !== p.bytes)
      throw new KennelError(
        'KENNEL_ERR_RECORDING_SIZE_MISMATCH',
        `this URL is signed for exactly ${p.bytes} bytes, got ${body.length}`,
        { reason: 'size-mismatch' },
      )
    const sha256 = sha256Hex(body)
    if (p.sha256 !== '' && sha256 !== p.sha256)
      throw new KennelError(
        'KENNEL_ERR_RECORDING_HASH_MISMATCH',
        `this URL is signed for content with SHA-256 ${p.sha256}, got ${sha256}`,
        { reason: 'sha256-mismatch' },
      )
    const dataKey = await this.keys.keyFor(p.householdId)
    await fs.mkdir(this.objects, { recursive: true, mode: 0o700 })
    const meta: ObjectMeta = { householdId: p.householdId, contentType: p.contentType, size: body.length }
    const tmp = `${this.file(key)}.${randomBytes(8).toString('hex')}.tmp`
    try {
      await fs.writeFile(`${tmp}.json`, JSON.stringify(meta), { mode: 0o600 })
      await fs.writeFile(tmp, seal(dataKey, body, key), { mode: 0o600 })
      // link() creates the object's name atomically and fails if it exists: of two PUTs (or a
      // second one later) exactly one stores, and a stored object is never replaced
      await fs.link(tmp, this.file(key)).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST')
          throw new KennelError(
            'KENNEL_ERR_URL_USED',
            'this upload URL has already been used; an object is written once',
            { reason: 'already-used' },
          )
        throw err
      })
      await fs.rename(`${tmp}.json`, `${this.file(key)}.json`)
    } finally {
      await Promise.all([fs.rm(tmp, { force: true }), fs.rm(`${tmp}.json`, { force: true })])
    }
    return { size: body.length, sha256 }
  }

  /** GET through a signed URL: verify, open the sealed object and, when the caller knows the
   * SHA-256 recorded for it, refuse content that is not exactly that (KENNEL_ERR_RECORDING_HASH_MISMATCH). */
  async send(
    key: string,
    p: SignedParams,
    expectedSha256?: string,
  ): Promise<{ body: Buffer; contentType: string; sha256: string }> {
    this.verify('GET', key, p)
    const meta = await this.meta(key)
    if (!meta || meta.householdId !== p.householdId) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such object')
    const body = await this.openObject(key, meta)
    if (!body) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such object')
    const sha256 = sha256Hex(body)
    if (expectedSha256 !== undefined && sha256 !== expectedSha256) {
      throw new KennelError(
        'KENNEL_ERR_RECORDING_HASH_MISMATCH',
        'the stored object is not the content recorded when the recording was completed; it is not served',
        { reason: 'content-mismatch' },
      )
    }
    return { body, contentType: meta.contentType, sha256 }
  }

  /** size and SHA-256 of the stored plaintext, read back from the sealed file */
  async stat(key: string): Promise<BlobStat | undefined> {
    assertKey(key)
    const meta = await this.meta(key)
    const body = meta && (await this.openObject(key, meta))
    return body ? { size: body.length, sha256: sha256Hex(body) } : undefined
  }

  async delete(key: string): Promise<void> {
    assertKey(key)
    await Promise.all([fs.rm(this.file(key), { force: true }), fs.rm(`${this.file(key)}.json`, { force: true })])
  }

  async shredHousehold(householdId: string): Promise<void> {
    await this.keys.shred(householdId)
  }

  async close(): Promise<void> {}

  /** the URL's signature and expiry; receive and send check them too */
  verify(method: BlobMethod, key: string, p: SignedParams): void {
    assertKey(key)
    const expected = Buffer.from(this.sign(method, key, p))
    const given = Buffer.from(p.sig)
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new KennelError('KENNEL_ERR_URL_SIGNATURE', 'the URL signature does not match this object and method')
    }
    // checked after the signature so that an attacker cannot extend `expires` (R5)
    if (this.now().getTime() / 1000 > p.expires)
      throw new KennelError('KENNEL_ERR_URL_EXPIRED', 'this URL has expired; ask for a new one')
  }

  private sign(method: BlobMethod, key: string, p: Omit<SignedParams, 'sig'>): string {
    const fields = [method, key, p.householdId, p.contentType, p.bytes, p.sha256, p.credential, p.expires]
    return createHmac('sha256', this.signingKey).update(fields.join('\n')).digest('base64url')
  }

  /** the plaintext, or undefined when the object is not (completely) stored */
  private async openObject(key: string, meta: ObjectMeta): Promise<Buffer | undefined> {
    let sealed: Buffer
    try {
      sealed = await fs.readFile(this.file(key))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    const dataKey = await this.keys.existingKey(meta.householdId)
    if (!dataKey) throw new KennelError('KENNEL_ERR_KEY_SHREDDED', 'the key of this object was erased')
    return open(dataKey, sealed, key)
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
