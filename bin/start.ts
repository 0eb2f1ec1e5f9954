import type { Config } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'

// The composition root: the only place that wires broker/, api/, projections/ and devices/
// together and listens (STYLE §1). Tests call startKennel with port 0 and a temporary data dir.

export interface RunningKennel {
  config: Config
  store: EventStore
  ports: { mqtt?: number; api?: number; metrics?: number }
  stop(): Promise<void>
}

export async function startKennel(config: Config, log: Logger): Promise<RunningKennel> {
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  log.info({ eventStore: store.kind, environment: store.environment, dataDir: config.dataDir }, 'event store open')
  const stops: Array<() => Promise<void>> = [() => store.close()]
  const ports: RunningKennel['ports'] = {}
  return {
    config,
    store,
    ports,
    async stop() {
      for (const stop of stops.reverse()) await stop()
    },
  }
}
