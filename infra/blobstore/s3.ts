import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import type { BlobStat, BlobStore, PresignedUrl, PresignRequest } from './port.ts'

// S3 (R5, R12, R14): SigV4 presigned URLs that expire and are bound to one key and one method;
// uploads must carry the signed Content-Type, Content-Length and server-side-encryption headers
// (SSE-KMS with KENNEL_S3_KMS_KEY_ID, otherwise SSE-S3). Credentials come from the SDK's default
// chain (role, environment), never from kennel's configuration.

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
const SSE_HEADERS = new Set(['x-amz-server-side-encryption', 'x-amz-server-side-encryption-aws-kms-key-id', 'content-type', 'content-length'])

export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const
  private readonly client: S3Client

  constructor(private readonly opts: S3BlobStoreOptions) {
    this.client = new S3Client({
      region: opts.region,
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      forcePathStyle: opts.forcePathStyle ?? opts.endpoint !== undefined,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    })
  }

  async presign(r: PresignRequest): Promise<PresignedUrl> {
    const signingDate = this.opts.now?.() ?? new Date()
    const expiresAt = new Date(Math.floor(signingDate.getTime() / 1000) * 1000 + r.ttlSeconds * 1000).toISOString()
    if (r.method === 'GET') {
      const url = await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.opts.bucket, Key: r.key }), { expiresIn: r.ttlSeconds, signingDate })
      return { method: 'GET', url, headers: {}, expiresAt }
    }
    const sse = this.opts.kmsKeyId ? { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: this.opts.kmsKeyId } : { ServerSideEncryption: 'AES256' as const }
    const command = new PutObjectCommand({ Bucket: this.opts.bucket, Key: r.key, ContentType: r.contentType, ContentLength: r.bytes, ...sse })
    const url = await getSignedUrl(this.client, command, { expiresIn: r.ttlSeconds, signingDate, unhoistableHeaders: SSE_HEADERS, signableHeaders: SSE_HEADERS })
    const headers: Record<string, string> = { 'content-type': r.contentType ?? 'application/octet-stream', 'x-amz-server-side-encryption': sse.ServerSideEncryption }
    if (this.opts.kmsKeyId) headers['x-amz-server-side-encryption-aws-kms-key-id'] = this.opts.kmsKeyId
    return { method: 'PUT', url, headers, expiresAt }
  }

  async stat(key: string): Promise<BlobStat | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key: key }))
      return { size: head.ContentLength ?? 0 }
    } catch (err) {
      if (err instanceof S3ServiceException && (err.$metadata.httpStatusCode === 404 || err.name === 'NotFound')) return undefined
      throw err
    }
  }

  async close(): Promise<void> {
    this.client.destroy()
  }
}
