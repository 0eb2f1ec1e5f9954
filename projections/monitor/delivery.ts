import type { EventStore, RecordedEvent, Subscription } from '../../infra/eventstore/port.ts'
import type { Logger } from '../../infra/log.ts'
import { deterministicEventId } from '../event-id.ts'
import type { ReadModelStore } from '../readmodels/port.ts'
import { ALERTS_STREAM, type AlertDeliveryFailed, type SecurityAlertRaised } from './events.ts'

// Delivers each SecurityAlertRaised once to the log and, when configured, as a JSON POST to
// KENNEL_ALERT_WEBHOOK, retrying with exponential backoff; a final failure is itself an event
// (AlertDeliveryFailed). Progress is a cursor of its own in the read-model store, untouched by
// `projections rebuild`, so a rebuild delivers nothing twice. Delivery is at-least-once: a crash
// after a POST and before the cursor moves repeats that POST (receivers dedupe by `id`).

const CURSOR = 'alert-delivery'

export interface AlertDeliveryOptions {
  store: EventStore
  readModels: ReadModelStore
  log: Logger
  webhook?: string
  /** attempts before giving up (default 5) */
  attempts?: number
  /** first retry delay; doubles each time (default 500 ms) */
  backoffMs?: number
  /** per-attempt timeout (default 5000 ms) */
  timeoutMs?: number
}

export interface AlertDelivery {
  /** resolves once every alert present at start has been handled */
  readonly caughtUp: Promise<void>
  stop(): Promise<void>
}

export async function startAlertDelivery(o: AlertDeliveryOptions): Promise<AlertDelivery> {
  const after = await o.readModels.cursor(CURSOR)
  let resolveCaughtUp!: () => void
  const caughtUp = new Promise<void>((r) => (resolveCaughtUp = r))
  let stopping = false
  const sub: Subscription = o.store.subscribe({
    after,
    filter: { streamPrefixes: [ALERTS_STREAM], types: ['SecurityAlertRaised'] },
    onEvent: async (e) => {
      await deliver(o, e, () => stopping)
      await o.readModels.setCursor(CURSOR, e.position)
    },
    onCaughtUp: () => resolveCaughtUp(),
    onRetry: (err, delayMs) => o.log.warn({ err: err.message, delayMs }, 'alert delivery: reading the event store failed; retrying'),
    onError: (err) => o.log.error({ err }, 'alert delivery stopped'),
  })
  return {
    caughtUp,
    async stop() {
      stopping = true
      await sub.stop()
    },
  }
}

async function deliver(o: AlertDeliveryOptions, e: RecordedEvent, stopping: () => boolean): Promise<void> {
  const alert = e.data as SecurityAlertRaised['data']
  o.log.warn({ alertId: e.id, rule: alert.rule, key: alert.key, severity: alert.severity }, `security alert: ${alert.summary}`)
  if (!o.webhook) return
  const body = JSON.stringify({ id: e.id, type: e.type, time: e.time, position: e.position, ...alert })
  const attempts = o.attempts ?? 5
  let error = ''
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, (o.backoffMs ?? 500) * 2 ** (i - 1)))
    if (stopping() && i > 0) break
    try {
      const res = await fetch(o.webhook, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(o.timeoutMs ?? 5000) })
      await res.arrayBuffer().catch(() => undefined)
      if (res.ok) return
      error = `HTTP ${res.status}`
    } catch (err) {
      error = (err as Error).message
    }
  }
  o.log.error({ alertId: e.id, error }, 'alert webhook delivery failed')
  const failed: AlertDeliveryFailed = { type: 'AlertDeliveryFailed', data: { alertId: e.id, rule: alert.rule, attempts, error } }
  await o.store.append(ALERTS_STREAM, [{ id: deterministicEventId(`alert-delivery-failed:${e.id}`), ...failed, metadata: { actor: 'system:monitor', causationId: e.id } }])
}
