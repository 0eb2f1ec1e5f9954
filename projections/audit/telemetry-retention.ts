import type { Logger } from '../../infra/log.ts'
import type { EntryLookups } from '../readmodels/port.ts'
import { AUDIT_PROJECTION } from './projection.ts'

// Per-message metadata is kept KENNEL_RETENTION_TELEMETRY_DAYS in the read models (R12): a job
// the projector runs drops the audit log's index of PublishAccepted and InboxMessagePublished
// (their `telemetry/` keys, lookup-keys.ts) for events older than that, so that no query or
// breach report reaches them any more. Everything else stays indexed (connections, denials,
// revocations, logins, URL uses: the security record), the Merkle leaves stay (the log still
// verifies), and the events stay in the event store, which cannot forget (docs/PRIVACY.md).

const DAY_MS = 86_400_000
/** how often the job runs (the first run is at start) */
export const TELEMETRY_RETENTION_INTERVAL_MS = 3_600_000

export interface TelemetryRetentionDeps {
  readModels: EntryLookups
  retentionDays: number
  now: () => Date
  log?: Logger
}

/** drop the index of telemetry older than `retentionDays`; returns how many postings went */
export async function forgetTelemetry(deps: TelemetryRetentionDeps): Promise<number> {
  const before = new Date(deps.now().getTime() - deps.retentionDays * DAY_MS).toISOString()
  const dropped = await deps.readModels.forget(AUDIT_PROJECTION, before)
  if (dropped > 0)
    deps.log?.info(
      { postings: dropped, before, retentionDays: deps.retentionDays },
      'telemetry index past retention dropped',
    )
  return dropped
}

/** the job, on the projector's read-model store: started by the composition root (bin/) */
export function startTelemetryRetention(
  o: Omit<TelemetryRetentionDeps, 'now'> & { now?: () => Date; intervalMs?: number },
): { stop(): Promise<void> } {
  let running: Promise<unknown> = Promise.resolve()
  const run = () => {
    running = running
      .then(() => forgetTelemetry({ ...o, now: o.now ?? (() => new Date()) }))
      .catch((err: unknown) => o.log?.error({ err }, 'telemetry retention failed; retried at the next run'))
  }
  run()
  const timer = setInterval(run, o.intervalMs ?? TELEMETRY_RETENTION_INTERVAL_MS)
  timer.unref()
  return {
    async stop() {
      clearInterval(timer)
      await running
    },
  }
}
