import { isKennelError } from '../errors.ts'
import type { EventFilter, RecordedEvent, SubscribeOptions, Subscription } from './port.ts'

// One live feed per store handle (embedded and PostgreSQL stores): it hands the events this
// process appends to its subscriptions from the append that wrote them, and reads the store only
// for what other processes wrote. docs/ARCHITECTURE.md ("Subscriptions") has the picture.
//
// - `head`: every event up to it has been put in the queue of every live subscription that wants
//   it (and left out, with the position noted, for those whose filter does not). Events arrive in
//   segments: the events of one of our own committed batches (one transaction, so nothing else
//   lies between its first and last position), or a range read from the store.
// - A segment that does not start right after `head` leaves a gap. Another of our own batches
//   that was still in flight when this one settled may fill it (PostgreSQL runs two at once and
//   either may commit first); once every batch in flight then has settled, what is left of the
//   gap was written by another process and is read from the store, then the segment follows.
//   A poll's "something changed" (a commit by another process, or ours not yet acknowledged)
//   is looked at only when none of our batches is in flight: the store's head then holds nothing
//   of ours unacknowledged, so the read is of what no acknowledgement brought. Under a steady
//   flow of our own batches that moment may not come; another process's commit is then found as
//   the gap before our next batch (positions follow commit order), and the poll's look waits
//   for the flow to pause. Looking as soon as the batches in flight at the poll had settled read
//   back, most of the time, the batch committed meanwhile and not yet acknowledged.
// - A subscription starts behind: it reads the store itself, with its own filter, up to the head,
//   and joins the feed when it has read at least to the feed's head (so nothing between is lost
//   and a duplicate is skipped by position). A subscription whose handler falls too far behind
//   leaves the feed and catches up from its last delivered position the same way.
// Positions must increase in commit order (both adapters serialise their writers); they need not
// be dense: a "gap" that holds nothing costs one empty read.

/** an event of one of this process's own committed batches; `recorded()` is built once, when a
 * subscription wants it */
export interface AppendedEvent {
  readonly position: number
  readonly stream: string
  readonly type: string
  recorded(): RecordedEvent
}

export interface FeedSource {
  /** events with after < position <= upTo, in global order, at most `max`, that match the filter */
  readRange(after: number, upTo: number, max: number, filter: EventFilter | undefined): Promise<RecordedEvent[]>
  /** position of the newest committed event */
  head(): Promise<number>
}

export interface CommitPoll {
  intervalMs: number
  /** one look for commits by other processes; calls feed.poke() when there may be some */
  tick(): void
}

export interface FeedOptions {
  /** events a live subscription may have queued before it leaves the feed and reads the store */
  maxQueued?: number
  /** events per read */
  batch?: number
}

/** delivered entries a queue keeps at its front before it is compacted */
const COMPACT_AT = 4096

/** a failed read is retried after 100 ms, doubling up to 5 s */
export const RETRY_FIRST_MS = 100
export const RETRY_MAX_MS = 5000

interface Segment {
  first: number
  last: number
  events: readonly AppendedEvent[]
  /** the last ticket issued when it settled: batches up to it may fill a gap before it */
  settledAfter: number
}

export class LiveFeed {
  /** see the header: every event up to here is queued for the live subscriptions */
  private head: number
  private readonly live = new Set<FeedSubscription>()
  private readonly all = new Set<FeedSubscription>()
  private segments: Segment[] = []
  private tickets = 0
  private readonly unsettled = new Set<number>()
  /** a poll saw a change: looked at once no batch of ours is in flight */
  private poked = false
  private pumping = false
  private pumpAgain = false
  private timer: NodeJS.Timeout | undefined
  private wakeRetry: (() => void) | undefined
  readonly maxQueued: number
  readonly batch: number

  constructor(
    readonly source: FeedSource,
    head: number,
    private readonly poll: CommitPoll,
    options: FeedOptions = {},
  ) {
    this.head = head
    this.maxQueued = options.maxQueued ?? 20_000
    this.batch = options.batch ?? 1000
  }

  /** the feed's head: a subscription that has read this far may join */
  get position(): number {
    return this.head
  }

  get hasLive(): boolean {
    return this.live.size > 0
  }

  /** An own batch is about to be sent to the database: its ticket, for `settled`. */
  sending(): number {
    const ticket = ++this.tickets
    this.unsettled.add(ticket)
    return ticket
  }

  /** The batch with this ticket settled: `written` are the events it committed, in position
   * order (none when nothing was written or the outcome is unknown: then call `poke` too). */
  settled(ticket: number, written: readonly AppendedEvent[]): void {
    this.unsettled.delete(ticket)
    if (written.length > 0) {
      const segment: Segment = {
        first: written[0]!.position,
        last: written[written.length - 1]!.position,
        events: written,
        settledAfter: this.tickets,
      }
      let i = this.segments.length
      while (i > 0 && this.segments[i - 1]!.first > segment.first) i--
      this.segments.splice(i, 0, segment)
    }
    this.pump()
  }

  /** Another process may have committed: look once the batches in flight now have settled. */
  poke(): void {
    this.poked = true
    this.pump()
  }

  subscribe(options: SubscribeOptions): Subscription {
    const sub = new FeedSubscription(this, options)
    this.all.add(sub)
    if (!this.timer) {
      this.timer = setInterval(() => this.poll.tick(), this.poll.intervalMs)
      this.timer.unref()
    }
    sub.start()
    void sub.closed.then(() => {
      this.all.delete(sub)
      this.live.delete(sub)
      if (this.all.size === 0 && this.timer) {
        clearInterval(this.timer)
        this.timer = undefined
      }
    })
    return sub
  }

  async stopAll(): Promise<void> {
    this.wakeRetry?.()
    await Promise.all([...this.all].map((s) => s.stop()))
  }

  /** called by a subscription that has delivered everything up to `through`: true if it is live now */
  join(sub: FeedSubscription, through: number): boolean {
    if (through < this.head) return false
    this.live.add(sub)
    return true
  }

  leave(sub: FeedSubscription): void {
    this.live.delete(sub)
  }

  /** no batch issued up to `ticket` is still in flight */
  private quiet(ticket: number): boolean {
    for (const t of this.unsettled) return t > ticket
    return true
  }

  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true
      return
    }
    this.pumping = true
    void this.drain().finally(() => {
      this.pumping = false
      if (this.pumpAgain) this.pump()
    })
  }

  private async drain(): Promise<void> {
    do {
      this.pumpAgain = false
      if (this.live.size === 0) {
        // nobody to serve: a subscription that joins later reads up to the head itself
        for (const s of this.segments) if (s.last > this.head) this.head = s.last
        this.segments = []
        this.poked = false
        continue
      }
      while (this.segments.length > 0) {
        const s = this.segments[0]!
        if (s.last <= this.head) {
          this.segments.shift()
          continue
        }
        if (s.first <= this.head + 1) {
          this.segments.shift()
          this.fanOut(s.events, s.last)
          continue
        }
        if (!this.quiet(s.settledAfter)) break
        // nobody left to read for (or the store closed): the next turn drops the segments
        if (!(await this.fill(s.first - 1))) break
      }
      if (this.live.size > 0 && this.poked && this.unsettled.size === 0) {
        this.poked = false
        const head = await this.retrying(() => this.source.head())
        // a batch sent while the head was read may be in it: the gap before that batch's segment
        // is read once it settles, so only up to where no batch of ours can be
        if (head !== undefined && head > this.head) {
          if (this.unsettled.size === 0) await this.fill(head)
          else this.poked = true
        }
        if (this.poked && this.unsettled.size === 0) this.pumpAgain = true
      }
      if (this.live.size === 0 && this.segments.length > 0) this.pumpAgain = true
    } while (this.pumpAgain)
  }

  /** read (head, upTo] for the live subscriptions; false when there is nobody left to read for */
  private async fill(upTo: number): Promise<boolean> {
    while (this.head < upTo) {
      if (this.live.size === 0) return false
      const from = this.head
      const events = await this.retrying(() => this.source.readRange(from, upTo, this.batch, unionFilter(this.live)))
      if (events === undefined) return false
      // a segment may have moved the head while this read ran
      const through = events.length < this.batch ? upTo : events[events.length - 1]!.position
      if (through > this.head) this.fanOut(events, through)
    }
    return true
  }

  /** queue the events after the head for each live subscription that wants them; head = through */
  private fanOut(events: ReadonlyArray<AppendedEvent | RecordedEvent>, through: number): void {
    const head = this.head
    for (const sub of this.live) {
      for (let i = 0; i < events.length; i++) {
        const e = events[i]!
        if (e.position <= head || e.position <= sub.queued || !sub.wants(e)) continue
        sub.push(isAppended(e) ? e.recorded() : e)
      }
      sub.passed(through)
    }
    this.head = through
  }

  /** run a read, retrying failures with backoff (reported to every live subscription); undefined
   * when nobody is left to read for or the store is closed */
  private async retrying<T>(read: () => Promise<T>): Promise<T | undefined> {
    for (let failures = 0; ; failures++) {
      try {
        return await read()
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err))
        // stopped meanwhile (the store closing ends its pool under a read): nobody to retry for
        if (this.live.size === 0) return undefined
        if (isKennelError(err, 'KENNEL_ERR_EVENTSTORE_CLOSED')) {
          for (const sub of this.live) sub.fail(error)
          return undefined
        }
        const delayMs = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** failures)
        for (const sub of this.live) sub.options.onRetry?.(error, delayMs)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs)
          this.wakeRetry = () => (clearTimeout(timer), resolve())
        })
        this.wakeRetry = undefined
        if (this.live.size === 0) return undefined
      }
    }
  }
}

const isAppended = (e: AppendedEvent | RecordedEvent): e is AppendedEvent =>
  typeof (e as AppendedEvent).recorded === 'function'

/** the narrowest filter every live subscription's events pass: undefined as soon as one takes all */
function unionFilter(subs: Iterable<FeedSubscription>): EventFilter | undefined {
  const types = new Set<string>()
  const prefixes = new Set<string>()
  let byType = true
  let byPrefix = true
  for (const sub of subs) {
    const f = sub.filter
    if (f?.types) for (const t of f.types) types.add(t)
    else byType = false
    if (f?.streamPrefixes) for (const p of f.streamPrefixes) prefixes.add(p)
    else byPrefix = false
    if (!byType && !byPrefix) return undefined
  }
  return { ...(byType ? { types: [...types] } : {}), ...(byPrefix ? { streamPrefixes: [...prefixes] } : {}) }
}

/** A catch-up subscription: it reads the store up to the feed's head, joins the feed, and is fed
 * from then on; each event is delivered once, in global order. */
class FeedSubscription implements Subscription {
  readonly filter: EventFilter | undefined
  /** the filter's types as a set: every event appended is checked against every subscription */
  private readonly types: ReadonlySet<string> | undefined
  /** every event up to here is in the queue (or was left out by the filter) */
  queued = 0
  /** every event up to here was handed to onEvent (or left out) */
  private delivered: number
  private queue: Array<RecordedEvent | number> = []
  private next = 0
  private stopped = false
  private overflowed = false
  private failure: Error | undefined
  private wake: (() => void) | undefined
  private done!: () => void
  readonly closed: Promise<void>

  constructor(
    private readonly feed: LiveFeed,
    readonly options: SubscribeOptions,
  ) {
    this.filter = options.filter
    this.types = options.filter?.types ? new Set(options.filter.types) : undefined
    this.delivered = options.after ?? 0
    this.closed = new Promise<void>((r) => (this.done = r))
  }

  wants(e: { stream: string; type: string }): boolean {
    if (this.types !== undefined && !this.types.has(e.type)) return false
    const prefixes = this.filter?.streamPrefixes
    if (prefixes === undefined) return true
    for (let i = 0; i < prefixes.length; i++) if (e.stream.startsWith(prefixes[i]!)) return true
    return false
  }

  start(): void {
    this.run().then(
      () => this.done(),
      (err: unknown) => {
        this.stopped = true
        this.feed.leave(this)
        this.options.onError?.(err instanceof Error ? err : new Error(String(err)))
        this.done()
      },
    )
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.feed.leave(this)
    this.wake?.()
    await this.closed
  }

  /** the feed could not read for this subscription (the store closed) */
  fail(err: Error): void {
    this.failure = err
    this.feed.leave(this)
    this.wake?.()
  }

  push(event: RecordedEvent): void {
    if (this.queue.length - this.next >= this.feed.maxQueued) {
      // too far behind: read the store instead of holding every event in memory
      this.overflowed = true
      this.feed.leave(this)
      this.wake?.()
      return
    }
    if (this.next > COMPACT_AT && this.next * 2 > this.queue.length) {
      // a queue that is never empty (a handler always a little behind) would only grow
      this.queue = this.queue.slice(this.next)
      this.next = 0
    }
    this.queue.push(event)
    this.queued = event.position
  }

  /** the feed has handled everything up to `through` for this subscription */
  passed(through: number): void {
    if (this.overflowed) return
    if (through > this.queued) {
      if (this.options.onCheckpoint) this.queue.push(through)
      this.queued = through
    }
    const wake = this.wake
    if (wake && this.next < this.queue.length) {
      this.wake = undefined
      wake()
    }
  }

  private async run(): Promise<void> {
    let caughtUp = false
    for (;;) {
      if (!(await this.catchUp())) return
      if (!caughtUp) {
        caughtUp = true
        this.options.onCaughtUp?.()
      }
      if (!(await this.follow())) return
    }
  }

  /** read the store up to the feed's head and join it; false when stopped */
  private async catchUp(): Promise<boolean> {
    this.queue = []
    this.next = 0
    this.overflowed = false
    let target = this.feed.hasLive ? this.feed.position : await this.read(() => this.feed.source.head())
    for (;;) {
      if (target === undefined || this.stopped) return false
      while (this.delivered < target) {
        const from = this.delivered
        const events = await this.read(() => this.feed.source.readRange(from, target!, this.feed.batch, this.filter))
        if (events === undefined) return false
        for (const e of events) {
          if (this.stopped) return false
          const r = this.options.onEvent(e)
          if (r) await r
          this.delivered = e.position
        }
        if (events.length < this.feed.batch) {
          if (this.delivered < target) this.options.onCheckpoint?.(target)
          this.delivered = target
        }
      }
      if (this.stopped) return false
      this.queued = this.delivered
      if (this.feed.join(this, this.delivered)) return true
      target = this.feed.position
    }
  }

  /** deliver what the feed queues; false when stopped, true when it fell behind and must read */
  private async follow(): Promise<boolean> {
    for (;;) {
      // this.queue is read again after each event: push() may have compacted it meanwhile
      while (this.next < this.queue.length) {
        const item = this.queue[this.next]!
        this.queue[this.next++] = 0
        if (typeof item === 'number') {
          this.delivered = item
          this.options.onCheckpoint?.(item)
        } else {
          const r = this.options.onEvent(item)
          if (r) await r
          this.delivered = item.position
        }
        if (this.stopped) return false
      }
      if (this.failure) throw this.failure
      if (this.stopped) return false
      if (this.overflowed) return true
      if (this.next === this.queue.length) {
        this.queue.length = 0
        this.next = 0
      }
      await new Promise<void>((resolve) => (this.wake = resolve))
    }
  }

  /** a catch-up read, retried with backoff; undefined once stopped */
  private async read<T>(read: () => Promise<T>): Promise<T | undefined> {
    for (let failures = 0; !this.stopped; failures++) {
      try {
        return await read()
      } catch (err) {
        if (this.stopped || isKennelError(err, 'KENNEL_ERR_EVENTSTORE_CLOSED')) throw err
        const delayMs = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** failures)
        this.options.onRetry?.(err instanceof Error ? err : new Error(String(err)), delayMs)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs)
          this.wake = () => (clearTimeout(timer), resolve())
        })
        this.wake = undefined
      }
    }
    return undefined
  }
}
