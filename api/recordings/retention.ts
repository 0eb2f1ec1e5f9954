import type { BlobStore } from '../../infra/blobstore/port.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'
import type { Logger } from '../../infra/log.ts'
import { followProjections } from '../../projections/follow.ts'
import type { Documents } from '../../projections/projection.ts'
import { recordingStream, type RecordingExpired } from './events.ts'
import { allRecordings, recordingsProjection } from './projection.ts'

// Recordings are kept KENNEL_RETENTION_RECORDINGS_DAYS (R12): a job the projector runs deletes
// older ones, object first and then RecordingExpired, so an interrupted run is finished by the
// next (deleting an absent object is no error). On S3 the bucket's lifecycle rule expires the
// same objects after the same number of days (infra/deploy/cdk), in case this job is not running.

const DAY_MS = 86_400_000
/** how often the job runs (the first run is at start) */
export const RETENTION_INTERVAL_MS = 3_600_000

export interface RetentionDeps {
  store: EventStore
  /** the recordings read model, caught up */
  docs: Documents
  blobs: BlobStore
  retentionDays: number
  now: () => Date
  log?: Logger
}

/** delete every recording created more than `retentionDays` ago; returns how many */
export async function expireRecordings(deps: RetentionDeps): Promise<number> {
  const now = deps.now()
  const cutoff = now.getTime() - deps.retentionDays * DAY_MS
  const due = [...allRecordings(deps.docs)].filter((r) => Date.parse(r.createdAt) < cutoff)
  for (const r of due) {
    await deps.blobs.delete(r.objectKey)
    const expired: RecordingExpired = {
      type: 'RecordingExpired',
      data: {
        recordingId: r.recordingId,
        householdId: r.householdId,
        deviceId: r.deviceId,
        createdAt: r.createdAt,
        expiredAt: now.toISOString(),
        retentionDays: deps.retentionDays,
      },
    }
    await deps.store.append(recordingStream(r.recordingId), [{ ...expired, metadata: { actor: 'system:retention' } }])
  }
  if (due.length > 0)
    deps.log?.info({ recordings: due.length, retentionDays: deps.retentionDays }, 'expired recordings deleted')
  return due.length
}

/** the job, on its own follower of the recordings read model: started by the projector (bin/) */
export function startRecordingRetention(
  o: Omit<RetentionDeps, 'docs' | 'now'> & { now?: () => Date; intervalMs?: number },
): { stop(): Promise<void> } {
  const followed = followProjections(o.store, [recordingsProjection], o.log)
  let running: Promise<unknown> = Promise.resolve()
  const run = () => {
    running = running
      .then(async () => {
        await followed.caughtUp
        await followed.waitFor(await o.store.headPosition())
        await expireRecordings({ ...o, docs: followed.docs, now: o.now ?? (() => new Date()) })
      })
      .catch((err: unknown) => o.log?.error({ err }, 'recording retention failed; retried at the next run'))
  }
  run()
  const timer = setInterval(run, o.intervalMs ?? RETENTION_INTERVAL_MS)
  timer.unref()
  return {
    async stop() {
      clearInterval(timer)
      await running
      await followed.stop()
    },
  }
}
