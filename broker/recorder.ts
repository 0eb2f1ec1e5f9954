import type { EventMetadata, EventStore, NewEvent } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { type BrokerEvent, isSecurityRelevant } from './events.ts'

// Appends the broker's events (R19). Security-relevant events are appended before the caller
// answers the client (record() resolves after the append); the rest resolve at once. Every
// event is queued per stream, and all queued streams are flushed together, at most once per
// `commitIntervalMs`: a commit is an fsync, and with a synchronous store (SQLite) that blocks
// the event loop, so under a burst of connects one commit per handshake serialised the
// handshakes behind the disk. An isolated event waits for no one (the interval has passed);
// under load an awaited event waits at most the interval. A flush of a stream carries its
// queued events in order, in one append.

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

export function createRecorder(store: EventStore, log: Logger, { maxBatch = 500, commitIntervalMs = 5 } = {}): Recorder {
  const queued = new Map<string, Pending>()
  const inFlight = new Set<Promise<void>>()
  let timer: NodeJS.Timeout | undefined
  let immediate: NodeJS.Immediate | undefined
  let lastFlush = -Infinity
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
    clearTimeout(timer)
    clearImmediate(immediate)
    timer = immediate = undefined
    lastFlush = performance.now()
    return Promise.all([...queued.keys()].map(flushStream)).then(() => undefined)
  }

  function schedule(): void {
    if (timer || immediate) return
    const wait = lastFlush + commitIntervalMs - performance.now()
    // the end of the turn at least, so that the events of one turn share a commit
    if (wait <= 0) immediate = setImmediate(flushAll)
    else timer = setTimeout(flushAll, wait)
  }

  return {
    record(stream, event, metadata) {
      let pending = queued.get(stream)
      if (!pending) queued.set(stream, (pending = { events: [], waiters: [] }))
      pending.events.push({ type: event.type, data: event.data, metadata })
      const done = isSecurityRelevant(event) ? new Promise<void>((resolve, reject) => pending.waiters.push({ resolve, reject })) : Promise.resolve()
      if (pending.events.length >= maxBatch) void flushStream(stream)
      else schedule()
      return done
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
