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
const APPEND_ANY = { expectedRevision: 'any' } as const

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

  /** the append after a first attempt whose outcome is unknown */
  async function retry(stream: string, events: NewEvent[], first: unknown): Promise<void> {
    let err = first
    for (let attempt = 0; ; attempt++) {
      const delayMs = RETRY_DELAYS_MS[attempt]
      if (delayMs === undefined || !isKennelError(err, 'KENNEL_ERR_UNAVAILABLE')) throw err
      log.warn(
        { err: (err as Error).message, stream, events: events.length, delayMs },
        'broker event append failed; retrying with the same event ids',
      )
      await sleep(delayMs)
      try {
        await store.append(stream, events, APPEND_ANY)
        return
      } catch (next) {
        err = next
      }
    }
  }

  // one append per stream and flush: the first attempt without an async frame of its own, and
  // the bookkeeping in its two callbacks (this runs for every few publishes under load)
  function flushStream(stream: string): Promise<void> {
    const pending = queued.get(stream)
    if (!pending) return RECORDED
    queued.delete(stream)
    const failed = (err: unknown): void => {
      inFlight.delete(p)
      onFailure(pending.events.length)
      log.error({ err, stream, events: pending.events.length }, 'broker event append failed')
      pending.committed?.reject(err)
    }
    const committed = (): void => {
      inFlight.delete(p)
      pending.committed?.resolve()
    }
    const p: Promise<void> = store
      .append(stream, pending.events, APPEND_ANY)
      .then(committed, (err: unknown) => retry(stream, pending.events, err).then(committed, failed))
    inFlight.add(p)
    return p
  }

  function flushAll(): void {
    clearTimeout(timer)
    clearImmediate(immediate)
    timer = immediate = undefined
    lastFlush = performance.now()
    for (const stream of queued.keys()) void flushStream(stream)
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
      flushAll()
      await Promise.all([...inFlight])
    },
  }
}
