import type { Config } from '../infra/config.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { auditSigner } from '../projections/catalogue.ts'
import { startAlertDelivery } from '../projections/monitor/delivery.ts'
import type { ReadModelStore } from '../projections/readmodels/port.ts'
import { type Lag, startProjectionRunner } from '../projections/runner.ts'
import { persistentProjections } from './read-models.ts'

// The projector role: the persistent read models with their checkpoints, the tamper-evident
// audit log and its signed heads, the security monitor (R11, R17), and the delivery of its
// alerts to the log and the webhook.

/** what the rest of the process sees of a projector, wherever it runs (this thread, a worker) */
export interface Projector {
  /** resolves once the read models have applied every event that existed at start */
  readonly caughtUp: Promise<void>
  /** resolves once the read models have committed everything up to `position` */
  waitFor(position: number, timeoutMs?: number): Promise<void>
  /** how far the read models are behind the store (metrics) */
  lag(): Promise<Lag>
  /** lag as of the last `lag()` call, for synchronous gauges */
  readonly lastLag: Lag
  stop(): Promise<void>
}

export async function startProjector(config: Config, store: EventStore, readModels: ReadModelStore, log: Logger): Promise<Projector> {
  const runner = await startProjectionRunner({ store, readModels, projections: persistentProjections(config, auditSigner(config)), log: log.child({ component: 'projections' }) })
  try {
    const alerts = await startAlertDelivery({ store, readModels, log: log.child({ component: 'alerts' }), webhook: config.alertWebhook })
    return {
      caughtUp: runner.caughtUp,
      waitFor: (position, timeoutMs) => runner.waitFor(position, timeoutMs),
      lag: () => runner.lag(),
      get lastLag() {
        return runner.lastLag
      },
      async stop() {
        await alerts.stop()
        await runner.stop()
      },
    }
  } catch (err) {
    await runner.stop()
    throw err
  }
}
