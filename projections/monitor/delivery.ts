import { setTimeout as sleep } from 'node:timers/promises'
import type { EventStore, RecordedEvent, Subscription } from '../../infra/eventstore/port.ts'
import type { Logger } from '../../infra/log.ts'
import { deterministicEventId } from '../event-id.ts'
import type { ReadModelStore } from '../readmodels/port.ts'
import { ALERTS_STREAM, type AlertDeliveryFailed, type SecurityAlertRaised } from './events.ts'

// Logs each SecurityAlertRaised as soon as it is read and, when configured, POSTs it as JSON to
// KENNEL_ALERT_WEBHOOK in order, retrying with exponential backoff; a final failure is itself an
// event (AlertDeliveryFailed). Progress is a cursor of its own in the read-model store, untouched
// by `projections rebuild`, so a rebuild delivers nothing twice. The cursor moves past an alert
// only once it is delivered or its failure recorded: a stop or crash mid-retry, or between a
// delivery and the cursor's move, repeats that alert after a restart or on the projector that
// takes over (at-least-once): each POST carries the alert's event id as `Idempotency-Key` (and
// `id` in the body) for the receiver to drop repeats. No failure is recorded for a stopped retry.

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
  let readCaughtUp = false
  const stopping = new AbortController()
  // read but not yet handed to the webhook: the log never waits behind another alert's retries
  const pending: RecordedEvent[] = []
  let draining: Promise<void> | undefined

  async function drain(): Promise<void> {
    while (pending.length > 0 && !stopping.signal.aborted) {
      const e = pending[0]!
      if (!(await deliver(o, e, stopping.signal))) return
      await o.readModels.setCursor(CURSOR, e.position)
      pending.shift()
    }
  }
  function startDraining(): void {
    if (draining) return
    draining = drain().then(
      () => {
        draining = undefined
        // an alert read while the last step was settling
        if (pending.length > 0 && !stopping.signal.aborted) startDraining()
        else if (readCaughtUp && pending.length === 0) resolveCaughtUp()
      },
      (err: unknown) => {
        // the next alert read, or a restart, tries again from the cursor
        draining = undefined
        o.log.error({ err }, 'alert delivery failed')
      },
    )
  }

  const sub: Subscription = o.store.subscribe({
    after,
    filter: { streamPrefixes: [ALERTS_STREAM], types: ['SecurityAlertRaised'] },
    onEvent: (e) => {
      logAlert(o.log, e)
      pending.push(e)
      startDraining()
    },
    onCaughtUp: () => {
      readCaughtUp = true
      if (!draining && pending.length === 0) resolveCaughtUp()
    },
    onRetry: (err, delayMs) =>
      o.log.warn({ err: err.message, delayMs }, 'alert delivery: reading the event store failed; retrying'),
    onError: (err) => o.log.error({ err }, 'alert delivery stopped'),
  })
  return {
    caughtUp,
    async stop() {
      stopping.abort()
      await sub.stop()
      await draining
    },
  }
}

function logAlert(log: Logger, e: RecordedEvent): void {
  const alert = e.data as SecurityAlertRaised['data']
  log.warn(
    { alertId: e.id, rule: alert.rule, key: alert.key, severity: alert.severity },
    `security alert: ${alert.summary}`,
  )
}

/** false when stopped before the alert was delivered: nothing is recorded and it is retried after a restart */
async function deliver(o: AlertDeliveryOptions, e: RecordedEvent, stop: AbortSignal): Promise<boolean> {
  if (!o.webhook) return true
  const alert = e.data as SecurityAlertRaised['data']
  const body = JSON.stringify({ id: e.id, type: e.type, time: e.time, position: e.position, ...alert })
  const attempts = o.attempts ?? 5
  let error = ''
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await sleep((o.backoffMs ?? 500) * 2 ** (i - 1), undefined, { signal: stop }).catch(() => undefined)
    if (stop.aborted) return false
    try {
      const signal = AbortSignal.any([stop, AbortSignal.timeout(o.timeoutMs ?? 5000)])
      // the alert's event id: the same on every retry, from every node, after every restart
      const res = await fetch(o.webhook, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': e.id },
        body,
        signal,
      })
      await res.arrayBuffer().catch(() => undefined)
      if (res.ok) return true
      error = `HTTP ${res.status}`
    } catch (err) {
      if (stop.aborted) return false
      error = failureOf(err)
    }
    o.log.warn({ alertId: e.id, attempt: i + 1, attempts, error }, 'alert webhook attempt failed')
  }
  o.log.error({ alertId: e.id, attempts, error }, 'alert webhook delivery failed')
  const failed: AlertDeliveryFailed = {
    type: 'AlertDeliveryFailed',
    data: { alertId: e.id, rule: alert.rule, attempts, error },
  }
  await o.store.append(ALERTS_STREAM, [
    {
      id: deterministicEventId(`alert-delivery-failed:${e.id}`),
      ...failed,
      metadata: { actor: 'system:monitor', causationId: e.id },
    },
  ])
  return true
}

/** fetch rejects with "fetch failed"; the reason (ECONNREFUSED, a TLS error, ...) is its cause */
function failureOf(err: unknown): string {
  const e = err as Error & { cause?: Error & { code?: string } }
  const cause = e.cause?.message || e.cause?.code
  return cause ? `${e.message}: ${cause}` : e.message
}
