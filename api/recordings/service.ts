import { createHash, randomUUID } from 'node:crypto'
import type { EventMetadata } from '../../infra/eventstore/port.ts'
import { isKennelError, KennelError } from '../../infra/errors.ts'
import { newObjectKey, type PresignedUrl } from '../../infra/blobstore/port.ts'
import type { ApiContext } from '../context.ts'
import { recordingStream, type DownloadUrlIssued, type RecordingCompletionRefused, type RecordingCreated, type RecordingDirection, type RecordingStored, type UploadUrlIssued } from './events.ts'
import { recordingById, type RecordingDoc } from './projection.ts'

// The recording lifecycle shared by parent and device routes (R5, R13): create + upload URL,
// complete (only once the stored object has the declared size and SHA-256), download URL.
// Callers have already decided that the actor may touch the recording; every URL is evented
// before it is returned (R19), and bound to the credential it is issued to (R3).

export const MAX_RECORDING_BYTES = 20 * 1024 * 1024
export const contentTypes = ['audio/ogg', 'audio/opus', 'audio/mpeg', 'audio/mp4', 'audio/aac', 'audio/wav', 'audio/webm'] as const

export const newRecordingBody = {
  contentType: { type: 'string', enum: contentTypes },
  bytes: { type: 'integer', minimum: 1, maximum: MAX_RECORDING_BYTES },
  sha256: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'SHA-256 of the content (lowercase hex): the upload must have it, and completion checks it' },
} as const

export const presignedSchema = {
  type: 'object',
  properties: {
    recordingId: { type: 'string' },
    uploadUrl: { type: 'string', description: 'upload URLs only: where to PUT the bytes (the same as url); it can be used once' },
    url: { type: 'string' },
    method: { type: 'string' },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    expiresAt: { type: 'string' },
    sha256: { type: 'string', description: 'download URLs only: the SHA-256 recorded at completion; check the bytes against it' },
  },
} as const

export interface NewRecording {
  householdId: string
  deviceId: string
  direction: RecordingDirection
  contentType: string
  bytes: number
  sha256?: string | undefined
}

export interface IssuedUrl {
  recordingId: string
  /** upload URLs only, the name the parent app and toys look for (the same as url) */
  uploadUrl?: string
  url: string
  method: string
  headers: Record<string, string>
  expiresAt: string
  /** download URLs only: what the content's SHA-256 must be */
  sha256?: string
}

/** R16: what names one presigned URL in its issuance and its use, so that a use is credited to
 * the URL used and not to every URL of the recording: a hash of the URL's signature, which
 * events must never carry (docs/EVENTS.md) */
export function urlIdOfSignature(signature: string): string {
  return createHash('sha256').update(`kennel-url-id\n${signature}`).digest('base64url').slice(0, 22)
}

/** the embedded store signs with `sig`, S3 (SigV4) with `X-Amz-Signature` */
function urlIdOf(url: string): string {
  const q = new URL(url, 'http://relative.invalid').searchParams
  return urlIdOfSignature(q.get('sig') ?? q.get('X-Amz-Signature') ?? url)
}

/** the embedded store's URLs are paths on this API: they are made absolute with the configured
 * public origin, never the request's Host header (R5, R13) */
function absolute(ctx: ApiContext, p: PresignedUrl): PresignedUrl {
  return p.url.startsWith('/') ? { ...p, url: `${ctx.publicUrl()}${p.url}` } : p
}

/** the credential the action was taken with (`cert:…`, `token:…`): the URL is bound to it */
const credentialOf = (metadata: EventMetadata): string | undefined => (typeof metadata.credential === 'string' ? metadata.credential : undefined)

export async function createRecording(ctx: ApiContext, r: NewRecording, metadata: EventMetadata): Promise<IssuedUrl> {
  const recordingId = randomUUID()
  const objectKey = newObjectKey()
  const declared = r.sha256 === undefined ? {} : { sha256: r.sha256 }
  const presigned = absolute(ctx, await ctx.blobs.presign({ method: 'PUT', key: objectKey, ttlSeconds: ctx.config.presignTtlSeconds, householdId: r.householdId, contentType: r.contentType, bytes: r.bytes, ...declared, credential: credentialOf(metadata) }))
  const created: RecordingCreated = { type: 'RecordingCreated', data: { recordingId, householdId: r.householdId, deviceId: r.deviceId, direction: r.direction, contentType: r.contentType, bytes: r.bytes, ...declared, objectKey, createdAt: ctx.now().toISOString() } }
  const issued: UploadUrlIssued = { type: 'UploadUrlIssued', data: { recordingId, householdId: r.householdId, deviceId: r.deviceId, until: presigned.expiresAt, urlId: urlIdOf(presigned.url) } }
  await ctx.append(recordingStream(recordingId), [{ ...created, metadata }, { ...issued, metadata }], 'no_stream')
  ctx.metrics.urlsIssued.inc({ method: 'PUT' })
  return { recordingId, uploadUrl: presigned.url, url: presigned.url, method: presigned.method, headers: presigned.headers, expiresAt: presigned.expiresAt }
}

export async function issueDownloadUrl(ctx: ApiContext, r: RecordingDoc, metadata: EventMetadata): Promise<IssuedUrl> {
  if (r.status !== 'stored') throw new KennelError('KENNEL_ERR_RECORDING_INCOMPLETE', 'the recording has not been uploaded and completed yet')
  const presigned = absolute(ctx, await ctx.blobs.presign({ method: 'GET', key: r.objectKey, ttlSeconds: ctx.config.presignTtlSeconds, householdId: r.householdId, credential: credentialOf(metadata) }))
  const issued: DownloadUrlIssued = { type: 'DownloadUrlIssued', data: { recordingId: r.recordingId, householdId: r.householdId, deviceId: r.deviceId, until: presigned.expiresAt, urlId: urlIdOf(presigned.url) } }
  // nothing reads this event back, so there is no need to wait for the read models
  await ctx.store.append(recordingStream(r.recordingId), [{ ...issued, metadata }])
  ctx.metrics.urlsIssued.inc({ method: 'GET' })
  return { recordingId: r.recordingId, url: presigned.url, method: presigned.method, headers: presigned.headers, expiresAt: presigned.expiresAt, ...(r.sha256 ? { sha256: r.sha256 } : {}) }
}

/** how often a completion is retried when another event of the recording was appended meanwhile */
const COMPLETION_ATTEMPTS = 5

export async function completeRecording(ctx: ApiContext, recordingId: string, metadata: EventMetadata): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const r = recordingById(ctx.docs, recordingId)
    if (!r) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such recording')
    if (r.status === 'stored') return
    const stat = await ctx.blobs.stat(r.objectKey)
    if (!stat) throw new KennelError('KENNEL_ERR_RECORDING_INCOMPLETE', 'the recording has not been uploaded yet')
    if (stat.size !== r.bytes) await refuseCompletion(ctx, r, metadata, stat, 'size-mismatch', new KennelError('KENNEL_ERR_RECORDING_SIZE_MISMATCH', `the uploaded object has ${stat.size} bytes, ${r.bytes} were declared`))
    if (r.declaredSha256 !== undefined && stat.sha256 !== r.declaredSha256) await refuseCompletion(ctx, r, metadata, stat, 'sha256-mismatch', new KennelError('KENNEL_ERR_RECORDING_HASH_MISMATCH', `the uploaded object's SHA-256 is ${stat.sha256}, ${r.declaredSha256} was declared`))
    const stored: RecordingStored = { type: 'RecordingStored', data: { recordingId: r.recordingId, householdId: r.householdId, deviceId: r.deviceId, bytes: stat.size, sha256: stat.sha256, ...(r.uploadUrlId ? { urlId: r.uploadUrlId } : {}), storedAt: ctx.now().toISOString() } }
    try {
      await ctx.append(recordingStream(r.recordingId), [{ ...stored, metadata }], r.revision)
    } catch (err) {
      // another event of the recording came first (a download, a refused URL, a concurrent
      // complete): decide again on the caught-up read model
      if (!isKennelError(err, 'KENNEL_ERR_WRONG_EXPECTED_REVISION') || attempt === COMPLETION_ATTEMPTS) throw err
      await ctx.catchUp()
      continue
    }
    if (r.direction === 'to-device') await ctx.notifyDevice(r.deviceId, 'recordings', { recordingId: r.recordingId, contentType: r.contentType, bytes: stat.size, sha256: stat.sha256 })
    return
  }
}

/** the stored object is not what was declared: recorded (R19), then refused */
async function refuseCompletion(ctx: ApiContext, r: RecordingDoc, metadata: EventMetadata, stat: { size: number; sha256: string }, reason: RecordingCompletionRefused['data']['reason'], err: KennelError): Promise<never> {
  const refused: RecordingCompletionRefused = {
    type: 'RecordingCompletionRefused',
    data: { recordingId: r.recordingId, householdId: r.householdId, deviceId: r.deviceId, reason, bytes: stat.size, sha256: stat.sha256, declaredBytes: r.bytes, ...(r.declaredSha256 ? { declaredSha256: r.declaredSha256 } : {}) },
  }
  await ctx.store.append(recordingStream(r.recordingId), [{ ...refused, metadata }])
  throw err
}
