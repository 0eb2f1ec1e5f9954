import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { isKennelError } from '../infra/errors.ts'
import type { EventMetadata, EventStore, NewEvent } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { type BrokerEvent, awaitsCommit } from './events.ts'

// Appends the broker's events (R19). The events the client's answer waits for (security-relevant
// ones, and PublishAccepted: events.ts awaitsCommit) resolve record() once committed; the rest
// resolve at once. Every event is queued per stream, and all queued streams are flushed together,
// at most once per `commitIntervalMs`: a commit is an fsync, and with a synchronous store
// (SQLite) that blocks the event loop, so under a burst of connects one commit per handshake
// serialised the handshakes behind the disk. An isolated event waits for no one (the interval
// has passed); under load an awaited event waits at most the interval, and many publishes share
// one commit. A flush of a stream carries its queued events in order, in one append.
//
// An append whose outcome is unknown (KENNEL_ERR_UNAVAILABLE: a dropped database connection, a
// writer thread that died) is retried with the same event ids, which the store makes idempotent,
// so a blip neither loses an event nor records it twice; when the retries fail too, the waiting
// callers are refused (no PUBACK, no CONNACK 0).

const RECORDED = Promise.resolve()

/** pauses before the retries of an append whose outcome is unknown */
const RETRY_DELAYS_MS = [50, 250, 1000]

export interface Recorder {
  /** resolves once the event is committed when the client's answer waits for it, at once otherwise */
  record(stream: string, event: BrokerEvent, metadata: EventMetadata): Promise<void>
  /** append everything queued; resolves when done */
  flush(): Promise<void>
}

interface Pending {
  events: NewEvent[]
  /** settles when the batch's append does; one for every awaited event of the batch, made for the first */
  committed?: { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void }
}

function deferred(): NonNullable<Pending['committed']> {
  let resolve!: () => void
  let reject!: (err: unknown) => void
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)))
  return { promise, resolve, reject }
}

/** `onFailure` is told how many events an append that failed after its retries held (a metric) */
export function createRecorder(
  store: EventStore,
  log: Logger,
  { maxBatch = 500, commitIntervalMs = 5, onFailure = (_events: number): void => {} } = {},
): Recorder {
  const queued = new Map<string, Pending>()
  const inFlight = new Set<Promise<void>>()
  let timer: NodeJS.Timeout | undefined
  let immediate: NodeJS.Immediate | undefined
  let lastFlush = -Infinity

  async function append(stream: string, events: NewEvent[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await store.append(stream, events, { expectedRevision: 'any' })
        return
      } catch (err) {
        const delayMs = RETRY_DELAYS_MS[attempt]
        if (delayMs === undefined || !isKennelError(err, 'KENNEL_ERR_UNAVAILABLE')) throw err
        log.warn(
          { err: (err as Error).message, stream, events: events.length, delayMs },
          'broker event append failed; retrying with the same event ids',
        )
        await sleep(delayMs)
      }
    }
  }

  function flushStream(stream: string): Promise<void> {
    const pending = queued.get(stream)
    if (!pending) return Promise.resolve()
    queued.delete(stream)
    const p = append(stream, pending.events).then(
      () => pending.committed?.resolve(),
      (err: unknown) => {
        onFailure(pending.events.length)
        log.error({ err, stream, events: pending.events.length }, 'broker event append failed')
        pending.committed?.reject(err)
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
      if (!pending) queued.set(stream, (pending = { events: [] }))
      // the id is fixed here so that a retry of the append is recognised by the store
      pending.events.push({ id: randomUUID(), type: event.type, data: event.data, metadata })
      const done = awaitsCommit(event) ? (pending.committed ??= deferred()).promise : RECORDED
      if (pending.events.length >= maxBatch) void flushStream(stream)
      else schedule()
      return done
    },
    async flush() {
      await flushAll()
      await Promise.all([...inFlight])
    },
  }
}
