import { createHash, randomUUID } from 'node:crypto'
import type { EventMetadata } from '../../infra/eventstore/port.ts'
import { KennelError } from '../../infra/errors.ts'
import { handleCommand } from '../../infra/eventstore/command.ts'
import { newObjectKey, type PresignedUrl } from '../../infra/blobstore/port.ts'
import type { ApiContext } from '../context.ts'
import { recordingStream, type DownloadUrlIssued, type RecordingDirection } from './events.ts'
import { recordingById, type RecordingDoc } from './projection.ts'
import { CompletionRefused, decide, recordingDecider } from './recording.ts'

// The recording lifecycle shared by parent and device routes (R5, R13): create + upload URL,
// complete (only once the stored object has the declared size and SHA-256), download URL.
// Callers have already decided that the actor may touch the recording; every URL is evented
// before it is returned (R19), and bound to the credential it is issued to (R3).

export const MAX_RECORDING_BYTES = 20 * 1024 * 1024
export const contentTypes = [
  'audio/ogg',
  'audio/opus',
  'audio/mpeg',
  'audio/mp4',
  'audio/aac',
  'audio/wav',
  'audio/webm',
] as const

export const newRecordingBody = {
  contentType: { type: 'string', enum: contentTypes },
  bytes: { type: 'integer', minimum: 1, maximum: MAX_RECORDING_BYTES },
  sha256: {
    type: 'string',
    pattern: '^[0-9a-f]{64}$',
    description: 'SHA-256 of the content (lowercase hex): the upload must have it, and completion checks it',
  },
} as const

export const presignedSchema = {
  type: 'object',
  properties: {
    recordingId: { type: 'string' },
    uploadUrl: {
      type: 'string',
      description: 'upload URLs only: where to PUT the bytes (the same as url); it can be used once',
    },
    url: { type: 'string' },
    method: { type: 'string' },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    expiresAt: { type: 'string' },
    sha256: {
      type: 'string',
      description: 'download URLs only: the SHA-256 recorded at completion; check the bytes against it',
    },
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
const credentialOf = (metadata: EventMetadata): string | undefined =>
  typeof metadata.credential === 'string' ? metadata.credential : undefined

export async function createRecording(ctx: ApiContext, r: NewRecording, metadata: EventMetadata): Promise<IssuedUrl> {
  const recordingId = randomUUID()
  const objectKey = newObjectKey()
  const declared = r.sha256 === undefined ? {} : { sha256: r.sha256 }
  const presigned = absolute(
    ctx,
    await ctx.blobs.presign({
      method: 'PUT',
      key: objectKey,
      ttlSeconds: ctx.config.presignTtlSeconds,
      householdId: r.householdId,
      contentType: r.contentType,
      bytes: r.bytes,
      ...declared,
      credential: credentialOf(metadata),
    }),
  )
  const create = {
    type: 'CreateRecording',
    recordingId,
    ...r,
    objectKey,
    now: ctx.now(),
    upload: { until: presigned.expiresAt, urlId: urlIdOf(presigned.url) },
  } as const
  await handleCommand(ctx.store, recordingStream(recordingId), recordingDecider, (state) => decide(create, state), {
    append: ctx.append,
    metadata,
  })
  ctx.metrics.urlsIssued.inc({ method: 'PUT' })
  return {
    recordingId,
    uploadUrl: presigned.url,
    url: presigned.url,
    method: presigned.method,
    headers: presigned.headers,
    expiresAt: presigned.expiresAt,
  }
}

export async function issueDownloadUrl(ctx: ApiContext, r: RecordingDoc, metadata: EventMetadata): Promise<IssuedUrl> {
  if (r.status !== 'stored')
    throw new KennelError('KENNEL_ERR_RECORDING_INCOMPLETE', 'the recording has not been uploaded and completed yet')
  const presigned = absolute(
    ctx,
    await ctx.blobs.presign({
      method: 'GET',
      key: r.objectKey,
      ttlSeconds: ctx.config.presignTtlSeconds,
      householdId: r.householdId,
      credential: credentialOf(metadata),
    }),
  )
  const issued: DownloadUrlIssued = {
    type: 'DownloadUrlIssued',
    data: {
      recordingId: r.recordingId,
      householdId: r.householdId,
      deviceId: r.deviceId,
      until: presigned.expiresAt,
      urlId: urlIdOf(presigned.url),
    },
  }
  // nothing reads this event back, so there is no need to wait for the read models
  await ctx.store.append(recordingStream(r.recordingId), [{ ...issued, metadata }])
  ctx.metrics.urlsIssued.inc({ method: 'GET' })
  return {
    recordingId: r.recordingId,
    url: presigned.url,
    method: presigned.method,
    headers: presigned.headers,
    expiresAt: presigned.expiresAt,
    ...(r.sha256 ? { sha256: r.sha256 } : {}),
  }
}

/** how often a completion is tried when another event of the recording was appended meanwhile */
const COMPLETION_ATTEMPTS = 5

export async function completeRecording(ctx: ApiContext, recordingId: string, metadata: EventMetadata): Promise<void> {
  const r = recordingById(ctx.docs, recordingId)
  if (!r) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such recording')
  if (r.status === 'stored') return
  const handled = await handleCommand(
    ctx.store,
    recordingStream(recordingId),
    recordingDecider,
    async (state) => {
      const object = state.status === 'pending' ? await ctx.blobs.stat(state.objectKey) : undefined
      return decide({ type: 'CompleteRecording', object, now: ctx.now() }, state)
    },
    { append: ctx.append, metadata, attempts: COMPLETION_ATTEMPTS },
  ).catch(async (err: unknown) => {
    // the stored object is not what was declared: recorded (R19), then refused
    if (err instanceof CompletionRefused)
      await ctx.store.append(recordingStream(recordingId), [{ ...err.event, metadata }])
    throw err
  })
  const [stored] = handled.events
  if (stored?.type === 'RecordingStored' && r.direction === 'to-device')
    await ctx.notifyDevice(r.deviceId, 'recordings', {
      recordingId,
      contentType: r.contentType,
      bytes: stored.data.bytes,
      sha256: stored.data.sha256,
    })
}
