import { isKennelError } from '../errors.ts'
import type { EventFilter, RecordedEvent, SubscribeOptions, Subscription } from './port.ts'

/** Wakes waiting readers when the store may hold new events. A version counter closes the race
 * between "read found nothing" and "start waiting": a wait for a version already passed returns
 * at once. */
export class ChangeNotifier {
  private version = 0
  private waiters: Array<() => void> = []

  get current(): number {
    return this.version
  }

  notify(): void {
    this.version++
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }

  /** resolve when the version moves past `seen`, or after `timeoutMs` */
  wait(seen: number, timeoutMs: number): Promise<void> {
    if (this.version !== seen) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs)
      const self = this
      function done(): void {
        clearTimeout(timer)
        self.waiters = self.waiters.filter((w) => w !== done)
        resolve()
      }
      this.waiters.push(done)
    })
  }

  /** wake every waiter now, e.g. on close */
  wakeAll(): void {
    this.notify()
  }
}

export interface PullSource {
  /** events with position > after, in global order, at most max */
  readBatch(after: number, max: number, filter: EventFilter | undefined): Promise<RecordedEvent[]>
  notifier: ChangeNotifier
  /** fallback re-read interval when no notification arrives (other processes, missed signals) */
  pollMs: number
}

const BATCH = 1000
/** a failed read is retried after 100 ms, doubling up to 5 s */
export const RETRY_FIRST_MS = 100
export const RETRY_MAX_MS = 5000

/** A catch-up subscription over a pull source: reads from `after` in batches, signals caughtUp
 * once when a read reaches the head, then waits for changes. Each event is delivered exactly
 * once, in global order, because the next read always starts after the last delivered position.
 * A read that fails (the database restarting, a dropped connection) is retried with backoff from
 * that same position; only a closed store or a throwing handler stops the subscription. */
export function pullSubscription(source: PullSource, options: SubscribeOptions): Subscription {
  let stopped = false
  let after = options.after ?? 0
  let caughtUp = false
  let failures = 0
  let wake: (() => void) | undefined

  const read = async (): Promise<RecordedEvent[] | undefined> => {
    try {
      const batch = await source.readBatch(after, BATCH, options.filter)
      failures = 0
      return batch
    } catch (err) {
      if (stopped || isKennelError(err, 'KENNEL_ERR_EVENTSTORE_CLOSED')) throw err
      const delayMs = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** failures++)
      options.onRetry?.(err instanceof Error ? err : new Error(String(err)), delayMs)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs)
        wake = () => (clearTimeout(timer), resolve())
      })
      wake = undefined
      return undefined
    }
  }

  const run = async (): Promise<void> => {
    while (!stopped) {
      const seen = source.notifier.current
      const batch = await read()
      if (batch === undefined) continue
      for (const event of batch) {
        if (stopped) return
        await options.onEvent(event)
        after = event.position
      }
      if (batch.length < BATCH) {
        if (!caughtUp) {
          caughtUp = true
          options.onCaughtUp?.()
        }
        if (!stopped) await source.notifier.wait(seen, source.pollMs)
      }
    }
  }

  const closed = run().then(
    () => {},
    (err: unknown) => {
      stopped = true
      options.onError?.(err instanceof Error ? err : new Error(String(err)))
    },
  )

  return {
    closed,
    async stop() {
      stopped = true
      wake?.()
      source.notifier.wakeAll()
      await closed
    },
  }
}

export interface CommitPoll {
  intervalMs: number
  /** called when polling starts, to take the current state as seen */
  start?(): void
  /** one look for commits by other processes; calls notifier.notify() when there are some */
  tick(): void
}

/** A store's live subscriptions, and the poll that notices other processes' commits: it runs
 * only while at least one subscription is open (the CLI appending while the server runs). */
export class LiveSubscriptions {
  private readonly subscriptions = new Set<Subscription>()
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly notifier: ChangeNotifier,
    private readonly poll: CommitPoll,
  ) {}

  get polling(): boolean {
    return this.timer !== undefined
  }

  open(readBatch: PullSource['readBatch'], options: SubscribeOptions): Subscription {
    const sub = pullSubscription({ notifier: this.notifier, pollMs: 1000, readBatch }, options)
    this.subscriptions.add(sub)
    if (!this.timer) {
      this.poll.start?.()
      this.timer = setInterval(() => this.poll.tick(), this.poll.intervalMs)
      this.timer.unref()
    }
    void sub.closed.then(() => {
      this.subscriptions.delete(sub)
      if (this.subscriptions.size === 0) this.stopPolling()
    })
    return sub
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.subscriptions].map((s) => s.stop()))
    this.stopPolling()
  }

  private stopPolling(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }
}
