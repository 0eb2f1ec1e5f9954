import { KennelError } from '../../infra/errors.ts'
import type { Logger } from '../../infra/log.ts'
import type { BlobStat } from '../../infra/blobstore/port.ts'
import { FoldedRefusals } from '../../infra/net/folded-refusals.ts'
import { certificateView, checkCertificate } from '../../devices/registry.ts'
import { sessionById } from '../accounts/projection.ts'
import { householdById } from '../households/projection.ts'
import type { BlobUses, UrlUse } from '../blobs/routes.ts'
import type { ApiContext } from '../context.ts'
import {
  recordingStream,
  type RecordingDownloaded,
  type RecordingUploaded,
  type RecordingUrlRefused,
} from './events.ts'
import { recordingByObjectKey, type RecordingDoc } from './projection.ts'
import { urlIdOfSignature } from './service.ts'

// The uses of the embedded store's URLs, as the recordings context sees them (R3, R5, R16, R19).
// A URL is a bearer capability, but not one that outlives the credential it was issued to: at
// every use the toy's certificate (and its device) must still be good, or the parent's session
// still open and the parent still a member of the household. An upload URL writes once. Each use
// is evented before it is answered, and so is each refusal of a genuine URL.

const REFUSAL_EVENT_BLOCK_MS = 60_000

/** why the credential a URL was issued to no longer lets it be used, or undefined if it does */
function revokedBecause(ctx: ApiContext, r: RecordingDoc, credential: string): string | undefined {
  const separator = credential.indexOf(':')
  const kind = credential.slice(0, separator)
  const id = credential.slice(separator + 1)
  if (kind === 'cert') {
    const cert = certificateView(ctx.docs, id)
    if (!cert) return 'unknown-certificate'
    const verdict = checkCertificate(ctx.docs, cert.deviceId, id, ctx.now())
    return verdict.ok ? undefined : verdict.reason
  }
  if (kind === 'token') {
    const session = sessionById(ctx.docs, id)
    if (!session) return 'unknown-session'
    if (session.ended) return 'session-ended'
    if (Date.parse(session.expiresAt) <= ctx.now().getTime()) return 'session-expired'
    return householdById(ctx.docs, r.householdId)?.members.includes(session.accountId) ? undefined : 'not-a-member'
  }
  return 'no-credential'
}

function recordingOf(ctx: ApiContext, objectKey: string): RecordingDoc {
  const r = recordingByObjectKey(ctx.docs, objectKey)
  if (!r) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such object')
  return r
}

const anonymous = (use: UrlUse) => ({ actor: 'anonymous', sourceIp: use.ip, correlationId: use.correlationId })

export function recordingUrlUses(ctx: ApiContext, log?: Pick<Logger, 'error'>): BlobUses & { flush(): Promise<void> } {
  const appendRefusal = (event: RecordingUrlRefused, use: UrlUse): Promise<void> =>
    ctx.store
      .append(recordingStream(event.data.recordingId), [{ ...event, metadata: anonymous(use) }])
      .then(() => undefined)
  // one event per URL and reason per block; the rest of a burst is counted (R11, R19)
  const folded = new FoldedRefusals<{ event: RecordingUrlRefused; use: UrlUse }>(
    REFUSAL_EVENT_BLOCK_MS,
    ({ event, use }, attempts) =>
      appendRefusal({ ...event, data: { ...event.data, attempts } }, use).catch((err: unknown) =>
        log?.error({ err }, 'could not record refused recording URLs'),
      ),
  )

  return {
    admit(objectKey, use) {
      const r = recordingOf(ctx, objectKey)
      if (use.method === 'PUT' && r.status === 'stored')
        throw new KennelError(
          'KENNEL_ERR_URL_USED',
          'this recording is complete; its upload URL cannot be used again',
          { reason: 'already-used' },
        )
      if (use.method === 'GET' && r.status !== 'stored')
        throw new KennelError('KENNEL_ERR_RECORDING_INCOMPLETE', 'the recording has not been completed', {
          reason: 'incomplete',
        })
      const reason = revokedBecause(ctx, r, use.credential)
      if (reason)
        throw new KennelError(
          'KENNEL_ERR_URL_REVOKED',
          `the credential this URL was issued to can no longer use it (${reason}); ask for a new URL`,
          { reason },
        )
      return { sha256: r.sha256 }
    },

    async uploaded(objectKey, use, stored: BlobStat) {
      const r = recordingOf(ctx, objectKey)
      const event: RecordingUploaded = {
        type: 'RecordingUploaded',
        data: {
          recordingId: r.recordingId,
          householdId: r.householdId,
          deviceId: r.deviceId,
          bytes: stored.size,
          sha256: stored.sha256,
          until: use.until,
          urlId: urlIdOfSignature(use.signature),
        },
      }
      // no read model follows it: the completion that follows decides on the stream (recording.ts)
      await ctx.store.append(recordingStream(r.recordingId), [{ ...event, metadata: anonymous(use) }])
    },

    async downloaded(objectKey, use) {
      const r = recordingOf(ctx, objectKey)
      const event: RecordingDownloaded = {
        type: 'RecordingDownloaded',
        data: {
          recordingId: r.recordingId,
          householdId: r.householdId,
          deviceId: r.deviceId,
          bytes: r.bytes,
          until: use.until,
          urlId: urlIdOfSignature(use.signature),
        },
      }
      await ctx.store.append(recordingStream(r.recordingId), [{ ...event, metadata: anonymous(use) }])
    },

    async refused(objectKey, use, refusal) {
      const r = recordingByObjectKey(ctx.docs, objectKey)
      if (!r) return
      const urlId = urlIdOfSignature(use.signature)
      const reason = typeof refusal.details?.reason === 'string' ? refusal.details.reason : refusal.code
      const event: RecordingUrlRefused = {
        type: 'RecordingUrlRefused',
        data: {
          recordingId: r.recordingId,
          householdId: r.householdId,
          deviceId: r.deviceId,
          method: use.method,
          urlId,
          until: use.until,
          code: refusal.code,
          reason,
          attempts: 1,
        },
      }
      if (folded.count(`${urlId}:${reason}`, ctx.now().getTime(), { event, use })) await appendRefusal(event, use)
    },

    flush: () => folded.flush(),
  }
}
