import type { EventMetadata, EventStore, NewEvent } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { type BrokerEvent, isSecurityRelevant } from './events.ts'

// Appends the broker's events (R19). Security-relevant events are appended before the caller
// answers the client (record() resolves after the append); the rest are queued per stream and
// flushed together at the end of the turn, so recording costs throughput, not correctness. A
// flush of a stream carries its queued events and any awaited one in order, in one append.

export interface Recorder {
  /** resolves once the event is durable when it is security-relevant, at once otherwise */
  record(stream: string, event: BrokerEvent, metadata: EventMetadata): Promise<void>
  /** append everything queued; resolves when done */
  flush(): Promise<void>
  /** appends that failed (logged; also exposed as a metric) */
  readonly failures: number
}

interface Pending {
  events: NewEvent[]
  waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>
}

export function createRecorder(store: EventStore, log: Logger, maxBatch = 500): Recorder {
  const queued = new Map<string, Pending>()
  const inFlight = new Set<Promise<void>>()
  let scheduled = false
  let failures = 0

  function flushStream(stream: string): Promise<void> {
    const pending = queued.get(stream)
    if (!pending) return Promise.resolve()
    queued.delete(stream)
    const p = store.append(stream, pending.events, { expectedRevision: 'any' }).then(
      () => {
        for (const w of pending.waiters) w.resolve()
      },
      (err: unknown) => {
        failures += pending.events.length
        log.error({ err, stream, events: pending.events.length }, 'broker event append failed')
        for (const w of pending.waiters) w.reject(err)
      },
    )
    inFlight.add(p)
    void p.finally(() => inFlight.delete(p))
    return p
  }

  function flushAll(): Promise<void> {
    scheduled = false
    return Promise.all([...queued.keys()].map(flushStream)).then(() => undefined)
  }

  return {
    record(stream, event, metadata) {
      let pending = queued.get(stream)
      if (!pending) queued.set(stream, (pending = { events: [], waiters: [] }))
      pending.events.push({ type: event.type, data: event.data, metadata })
      if (isSecurityRelevant(event)) {
        const done = new Promise<void>((resolve, reject) => pending.waiters.push({ resolve, reject }))
        void flushStream(stream)
        return done
      }
      if (pending.events.length >= maxBatch) void flushStream(stream)
      else if (!scheduled) {
        scheduled = true
        setImmediate(flushAll)
      }
      return Promise.resolve()
    },
    async flush() {
      await flushAll()
      await Promise.all([...inFlight])
    },
    get failures() {
      return failures
    },
  }
}
