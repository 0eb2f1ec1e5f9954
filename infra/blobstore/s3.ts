import { createHash } from 'node:crypto'
import type { S3Client } from '@aws-sdk/client-s3'
import type { BlobStat, BlobStore, PresignedUrl, PresignRequest } from './port.ts'

// S3 (R5, R12, R14): SigV4 presigned URLs that expire and are bound to one key and one method;
// uploads must carry the signed Content-Type, Content-Length and server-side-encryption headers
// (SSE-KMS with KENNEL_S3_KMS_KEY_ID, otherwise SSE-S3), and `If-None-Match: *`, so S3 refuses
// (412) a second write of the key: an upload URL writes once. A declared SHA-256 is signed as
// `x-amz-checksum-sha256`, which S3 checks against the body (400 BadDigest). Credentials come from
// the SDK's default chain (role, environment), never from kennel's configuration.
//
// What S3 cannot do for kennel: it serves the URLs itself, so it cannot refuse a download URL
// whose credential was revoked after issuance (only the URL's lifetime bounds that), nor tell the
// API that a URL was used (S3 server access logs or CloudTrail data events do).
//
// The SDK (about 20 MB of resident memory) is loaded on first use: a kennel without
// KENNEL_S3_BUCKET never loads it.

export interface S3BlobStoreOptions {
  bucket: string
  region: string
  endpoint?: string | undefined
  kmsKeyId?: string | undefined
  /** tests: s3rver needs path-style addressing and static credentials */
  forcePathStyle?: boolean
  credentials?: { accessKeyId: string; secretAccessKey: string }
  now?: () => Date
}

// kept as headers so that the signature covers them and the client must send them
const SIGNED_HEADERS = new Set([
  'x-amz-server-side-encryption',
  'x-amz-server-side-encryption-aws-kms-key-id',
  'content-type',
  'content-length',
  'if-none-match',
  'x-amz-checksum-sha256',
  'x-amz-sdk-checksum-algorithm',
])

interface Sdk {
  s3: typeof import('@aws-sdk/client-s3')
  getSignedUrl: typeof import('@aws-sdk/s3-request-presigner').getSignedUrl
  client: S3Client
}

export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const
  private loaded: Promise<Sdk> | undefined

  constructor(private readonly opts: S3BlobStoreOptions) {}

  private sdk(): Promise<Sdk> {
    this.loaded ??= Promise.all([import('@aws-sdk/client-s3'), import('@aws-sdk/s3-request-presigner')]).then(
      ([s3, { getSignedUrl }]) => {
        const client = new s3.S3Client({
          region: this.opts.region,
          ...(this.opts.endpoint ? { endpoint: this.opts.endpoint } : {}),
          forcePathStyle: this.opts.forcePathStyle ?? this.opts.endpoint !== undefined,
          ...(this.opts.credentials ? { credentials: this.opts.credentials } : {}),
          // by default the SDK adds a CRC32 of the (empty) presigned body to a PutObject URL, which S3
          // would hold the real upload to; checksums are signed only when the client declared one
          requestChecksumCalculation: 'WHEN_REQUIRED',
        })
        return { s3, getSignedUrl, client }
      },
    )
    return this.loaded
  }

  async presign(r: PresignRequest): Promise<PresignedUrl> {
    const { s3, getSignedUrl, client } = await this.sdk()
    const signingDate = this.opts.now?.() ?? new Date()
    const expiresAt = new Date(Math.floor(signingDate.getTime() / 1000) * 1000 + r.ttlSeconds * 1000).toISOString()
    if (r.method === 'GET') {
      const url = await getSignedUrl(client, new s3.GetObjectCommand({ Bucket: this.opts.bucket, Key: r.key }), {
        expiresIn: r.ttlSeconds,
        signingDate,
      })
      return { method: 'GET', url, headers: {}, expiresAt }
    }
    const sse = this.opts.kmsKeyId
      ? { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: this.opts.kmsKeyId }
      : { ServerSideEncryption: 'AES256' as const }
    const checksum = r.sha256
      ? { ChecksumAlgorithm: 'SHA256' as const, ChecksumSHA256: Buffer.from(r.sha256, 'hex').toString('base64') }
      : undefined
    const command = new s3.PutObjectCommand({
      Bucket: this.opts.bucket,
      Key: r.key,
      ContentType: r.contentType,
      ContentLength: r.bytes,
      IfNoneMatch: '*',
      ...sse,
      ...checksum,
    })
    const url = await getSignedUrl(client, command, {
      expiresIn: r.ttlSeconds,
      signingDate,
      unhoistableHeaders: SIGNED_HEADERS,
      signableHeaders: SIGNED_HEADERS,
    })
    const headers: Record<string, string> = {
      'content-type': r.contentType ?? 'application/octet-stream',
      'if-none-match': '*',
      'x-amz-server-side-encryption': sse.ServerSideEncryption,
    }
    if (this.opts.kmsKeyId) headers['x-amz-server-side-encryption-aws-kms-key-id'] = this.opts.kmsKeyId
    if (checksum)
      Object.assign(headers, {
        'x-amz-sdk-checksum-algorithm': 'SHA256',
        'x-amz-checksum-sha256': checksum.ChecksumSHA256,
      })
    return { method: 'PUT', url, headers, expiresAt }
  }

  /** Reads the object back and hashes it. The checksum S3 keeps is whatever the writer declared
   * (verified by S3 itself, not by every S3-compatible store), and there is none when the client
   * declared nothing: completion compares the bytes themselves (at most 20 MB, once per recording). */
  async stat(key: string): Promise<BlobStat | undefined> {
    const { s3, client } = await this.sdk()
    let body: AsyncIterable<Uint8Array>
    try {
      body = (await client.send(new s3.GetObjectCommand({ Bucket: this.opts.bucket, Key: key })))
        .Body as AsyncIterable<Uint8Array>
    } catch (err) {
      if (
        err instanceof s3.S3ServiceException &&
        (err.$metadata.httpStatusCode === 404 || err.name === 'NoSuchKey' || err.name === 'NotFound')
      )
        return undefined
      throw err
    }
    const hash = createHash('sha256')
    let size = 0
    for await (const chunk of body) {
      hash.update(chunk)
      size += chunk.length
    }
    return { size, sha256: hash.digest('hex') }
  }

  /** In a versioned bucket (the production one, infra/deploy/cdk) this adds a delete marker: the
   * object is gone for every reader at once, and its noncurrent version is removed by the
   * bucket's lifecycle rule after the recovery window (docs/PRIVACY.md). */
  async delete(key: string): Promise<void> {
    const { s3, client } = await this.sdk()
    await client.send(new s3.DeleteObjectCommand({ Bucket: this.opts.bucket, Key: key }))
  }

  async shredHousehold(): Promise<void> {}

  async close(): Promise<void> {
    if (this.loaded) (await this.loaded).client.destroy()
  }
}
