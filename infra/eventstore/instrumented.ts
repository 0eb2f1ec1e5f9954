import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { isKennelError } from '../errors.ts'
import type { EventStore } from './port.ts'

// An event store that reports its appends and head to Prometheus (R11), around any adapter:
// the figures are the same whether the events go to SQLite, PostgreSQL or KurrentDB.

export function instrumentEventStore(store: EventStore, registry: Registry): EventStore {
  const registers = [registry]
  const appends = new Counter({
    name: 'kennel_eventstore_appends_total',
    help: 'appends by outcome: ok, conflict (wrong expected revision) or error',
    labelNames: ['outcome'],
    registers,
  })
  const events = new Counter({
    name: 'kennel_eventstore_events_appended_total',
    help: 'events in the appends that succeeded',
    registers,
  })
  const appendedOk = appends.labels('ok')
  const duration = new Histogram({
    name: 'kennel_eventstore_append_duration_seconds',
    help: 'time from an append call to its durable commit',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers,
  })
  new Gauge({
    name: 'kennel_eventstore_head_position',
    help: 'global position of the newest event in the store',
    registers,
    async collect() {
      this.set(await store.headPosition())
    },
  })
  return {
    get kind() {
      return store.kind
    },
    get environment() {
      return store.environment
    },
    get file() {
      return store.file
    },
    // runs for every append (under MQTT load, one per device and commit): the labelled counters
    // are looked up once, and no async frame or timer closure is made
    append(stream, batch, options) {
      const start = performance.now()
      return store.append(stream, batch, options).then(
        (result) => {
          duration.observe((performance.now() - start) / 1000)
          appendedOk.inc()
          events.inc(batch.length)
          return result
        },
        (err: unknown) => {
          duration.observe((performance.now() - start) / 1000)
          appends.inc({ outcome: isKennelError(err, 'KENNEL_ERR_WRONG_EXPECTED_REVISION') ? 'conflict' : 'error' })
          throw err
        },
      )
    },
    readStream: (stream, options) => store.readStream(stream, options),
    readAll: (options) => store.readAll(options),
    subscribe: (options) => store.subscribe(options),
    headPosition: () => store.headPosition(),
    close: () => store.close(),
  }
}
