import type { Config } from '../infra/config.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import { Readiness } from '../infra/ops/readiness.ts'
import { projectorLag } from '../projections/lag.ts'
import type { ReadModelStore } from '../projections/readmodels/port.ts'
import { persistentProjectionNames } from './read-models.ts'

// What /readyz checks in a kennel process: the event store answers, the read models are within
// KENNEL_READY_MAX_LAG_EVENTS of its head, and every listener of the process is up (each is
// bound only after the followers it decides with have caught up with the store: the broker's
// revocation set, the device CA). The lag is read from the shared stores, not from a runner in
// this process, so it holds wherever the projector runs. A broker-only node has no projector
// check: it serves toys whatever the read models' lag, and it opens no read-model store.

export function kennelReadiness(opts: {
  config: Pick<Config, 'readyMaxLagEvents'>
  store: EventStore
  readModels: Pick<ReadModelStore, 'checkpoints'> | undefined
}): Readiness {
  const { config, store, readModels } = opts
  const readiness = new Readiness().add({
    name: 'event-store',
    check: async () => ({ ok: true, detail: { kind: store.kind, head: await store.headPosition() } }),
  })
  if (!readModels) return readiness
  return readiness.add({
    name: 'projector',
    async check() {
      const lag = await projectorLag(store, readModels, persistentProjectionNames())
      return {
        ok: lag.behind <= config.readyMaxLagEvents,
        detail: { behind: lag.behind, maxBehind: config.readyMaxLagEvents, head: lag.head },
      }
    },
  })
}
