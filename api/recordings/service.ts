import { createHash, randomUUID } from 'node:crypto'
import type { EventMetadata } from '../../infra/eventstore/port.ts'
import { KennelError } from '../../infra/errors.ts'
import { newObjectKey, type PresignedUrl } from '../../infra/blobstore/port.ts'
import type { ApiContext } from '../context.ts'
import { recordingStream, type DownloadUrlIssued, type RecordingCreated, type RecordingDirection, type RecordingDownloaded, type RecordingStored, type UploadUrlIssued } from './events.ts'
import { recordingByObjectKey, type RecordingDoc } from './projection.ts'

// The recording lifecycle shared by parent and device routes (R5, R13): create + upload URL,
// complete (only once the object exists with the declared size), download URL. Callers have
// already decided that the actor may touch the recording; every URL is evented before it is
// returned (R19).

export const MAX_RECORDING_BYTES = 20 * 1024 * 1024
export const contentTypes = ['audio/ogg', 'audio/opus', 'audio/mpeg', 'audio/mp4', 'audio/aac', 'audio/wav', 'audio/webm'] as const

export const newRecordingBody = {
  contentType: { type: 'string', enum: contentTypes },
  bytes: { type: 'integer', minimum: 1, maximum: MAX_RECORDING_BYTES },
} as const

export const presignedSchema = {
  type: 'object',
  properties: {
    recordingId: { type: 'string' },
    uploadUrl: { type: 'string', description: 'upload URLs only: where to PUT the bytes (the same as url)' },
    url: { type: 'string' },
    method: { type: 'string' },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    expiresAt: { type: 'string' },
  },
} as const

export interface NewRecording {
  householdId: string
  deviceId: string
  direction: RecordingDirection
  contentType: string
  bytes: number
}

export interface IssuedUrl {
  recordingId: string
  /** upload URLs only, the name the parent app and toys look for (the same as url) */
  uploadUrl?: string
  url: string
  method: string
  headers: Record<string, string>
  expiresAt: string
}

/** R16: what names one presigned URL in DownloadUrlIssued and RecordingDownloaded, so that a
 * download is credited to the URL used and not to every URL of the recording: a hash of the
 * URL's signature, which events must never carry (docs/EVENTS.md) */
export function urlIdOfSignature(signature: string): string {
  return createHash('sha256').update(`kennel-url-id\n${signature}`).digest('base64url').slice(0, 22)
}

/** the embedded store signs with `sig`, S3 (SigV4) with `X-Amz-Signature` */
function urlIdOf(url: string): string {
  const q = new URL(url, 'http://relative.invalid').searchParams
  return urlIdOfSignature(q.get('sig') ?? q.get('X-Amz-Signature') ?? url)
}

/** the embedded store's URLs are paths on this API: make them absolute for the caller */
function absolute(p: PresignedUrl, origin: string): PresignedUrl {
  return p.url.startsWith('/') ? { ...p, url: `${origin}${p.url}` } : p
}

export async function createRecording(ctx: ApiContext, r: NewRecording, metadata: EventMetadata, origin: string): Promise<IssuedUrl> {
  const recordingId = randomUUID()
  const objectKey = newObjectKey()
  const presigned = absolute(await ctx.blobs.presign({ method: 'PUT', key: objectKey, ttlSeconds: ctx.config.presignTtlSeconds, householdId: r.householdId, contentType: r.contentType, bytes: r.bytes }), origin)
  const created: RecordingCreated = { type: 'RecordingCreated', data: { recordingId, ...r, objectKey, createdAt: ctx.now().toISOString() } }
  const issued: UploadUrlIssued = { type: 'UploadUrlIssued', data: { recordingId, householdId: r.householdId, deviceId: r.deviceId, until: presigned.expiresAt } }
  await ctx.append(recordingStream(recordingId), [{ ...created, metadata }, { ...issued, metadata }], 'no_stream')
  ctx.metrics.urlsIssued.inc({ method: 'PUT' })
  return { recordingId, uploadUrl: presigned.url, url: presigned.url, method: presigned.method, headers: presigned.headers, expiresAt: presigned.expiresAt }
}

export async function issueDownloadUrl(ctx: ApiContext, r: RecordingDoc, metadata: EventMetadata, origin: string): Promise<IssuedUrl> {
  if (r.status !== 'stored') throw new KennelError('KENNEL_ERR_RECORDING_INCOMPLETE', 'the recording has not been uploaded and completed yet')
  const presigned = absolute(await ctx.blobs.presign({ method: 'GET', key: r.objectKey, ttlSeconds: ctx.config.presignTtlSeconds, householdId: r.householdId }), origin)
  const issued: DownloadUrlIssued = { type: 'DownloadUrlIssued', data: { recordingId: r.recordingId, householdId: r.householdId, deviceId: r.deviceId, until: presigned.expiresAt, urlId: urlIdOf(presigned.url) } }
  // nothing reads this event back, so there is no need to wait for the read models
  await ctx.store.append(recordingStream(r.recordingId), [{ ...issued, metadata }])
  ctx.metrics.urlsIssued.inc({ method: 'GET' })
  return { recordingId: r.recordingId, url: presigned.url, method: presigned.method, headers: presigned.headers, expiresAt: presigned.expiresAt }
}

/** what the embedded store's GET route (api/blobs/routes.ts) calls before it sends the bytes:
 * the use of a download URL is appended before the object is served (R5, R16, R19) */
export function recordDownload(ctx: ApiContext) {
  return async function recordDownloadUse(objectKey: string, use: { ip: string; correlationId: string; until: string; signature: string }): Promise<void> {
    const r = recordingByObjectKey(ctx.docs, objectKey)
    if (!r) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such object')
    const downloaded: RecordingDownloaded = { type: 'RecordingDownloaded', data: { recordingId: r.recordingId, householdId: r.householdId, deviceId: r.deviceId, bytes: r.bytes, until: use.until, urlId: urlIdOfSignature(use.signature) } }
    // the URL is a bearer capability: whoever holds it is anonymous, known only by address
    await ctx.store.append(recordingStream(r.recordingId), [{ ...downloaded, metadata: { actor: 'anonymous', sourceIp: use.ip, correlationId: use.correlationId } }])
  }
}

export async function completeRecording(ctx: ApiContext, r: RecordingDoc, metadata: EventMetadata): Promise<void> {
  if (r.status === 'stored') return
  const stat = await ctx.blobs.stat(r.objectKey)
  if (!stat) throw new KennelError('KENNEL_ERR_RECORDING_INCOMPLETE', 'the recording has not been uploaded yet')
  if (stat.size !== r.bytes) throw new KennelError('KENNEL_ERR_RECORDING_SIZE_MISMATCH', `the uploaded object has ${stat.size} bytes, ${r.bytes} were declared`)
  const stored: RecordingStored = { type: 'RecordingStored', data: { recordingId: r.recordingId, householdId: r.householdId, deviceId: r.deviceId, bytes: stat.size, storedAt: ctx.now().toISOString() } }
  try {
    await ctx.append(recordingStream(r.recordingId), [{ ...stored, metadata }], r.revision)
  } catch (err) {
    // a concurrent complete won; the recording is stored either way
    if (err instanceof KennelError && err.code === 'KENNEL_ERR_WRONG_EXPECTED_REVISION') return
    throw err
  }
  if (r.direction === 'to-device') await ctx.notifyDevice(r.deviceId, 'recordings', { recordingId: r.recordingId, contentType: r.contentType, bytes: r.bytes })
}
