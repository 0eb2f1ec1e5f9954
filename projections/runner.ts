import type { Logger } from '../infra/log.ts'
import { isKennelError } from '../infra/errors.ts'
import type { EventStore, RecordedEvent, Subscription } from '../infra/eventstore/port.ts'
import type { FollowedProjections } from './follow.ts'
import { OUTBOX, type OutboxEntry } from './outbox.ts'
import { ALL_EVENTS, MemoryDocuments, type DocumentTx, type Documents, type Projection } from './projection.ts'
import type { EntryColumns, EntryRow, ProjectionChanges, ReadModelStore } from './readmodels/port.ts'

// The persistent projection runner. It follows the store from the lowest checkpoint, applies
// each event to the in-memory documents of the projections that have not seen it yet, and cuts
// a batch every `batchSize` events or when delivery pauses. A long catch-up whose all-events
// projections can apply it themselves (Projection.catchUp) reads only the other projections'
// event types, up to the head known when it started; the subscription takes over from there.
// A batch's changed documents, entries and checkpoints go to the read-model store in one
// transaction: after a crash the stored documents are exactly the effect of the events up to
// the stored checkpoint, so the restart applies every later event once. Events raised by projections (outbox) are appended after the
// commit with deterministic ids, so a repeat after a crash is absorbed by the idempotent append.

/** a server's runner reloads from the stored checkpoints this long after a failure */
const RESTART_RETRY_MS = 1000

export interface RunnerOptions {
  store: EventStore
  readModels: ReadModelStore
  projections: readonly Projection[]
  /** events per read-model transaction while catching up (default 2000) */
  batchSize?: number
  /** interval of `tick` for time-driven projections (default 1000 ms) */
  tickMs?: number
  log?: Logger
  /** called after each commit with the position stored (progress bars) */
  onCommit?: (position: number) => void
  /** test hook: runs inside each batch after apply and before the commit */
  beforeCommit?: (position: number) => void
  /** a failure ends the runner instead of being retried: `caughtUp` and every `waitFor` reject
   * with it (a rebuild reports a projection that throws or a store that refuses its writes;
   * a server keeps retrying) */
  failFast?: boolean
}

export interface Lag {
  /** events in the store after the runner's position */
  events: number
  /** age of the newest applied event when behind, 0 when caught up */
  seconds: number
}

export interface ProjectionRunner extends FollowedProjections {
  /** how far the read models are behind the store (metrics) */
  lag(): Promise<Lag>
  /** lag as of the last `lag()` call, for synchronous gauges */
  readonly lastLag: Lag
}

class TrackingTx implements DocumentTx {
  /** ids written since the last commit, by collection (no key or tuple allocated per write) */
  readonly dirty = new Map<string, Set<string>>()
  /** whether anything was written since the last commit */
  changed = false
  constructor(readonly docs: MemoryDocuments) {}
  get<T>(collection: string, id: string): T | undefined {
    return this.docs.get<T>(collection, id)
  }
  values<T>(collection: string): Iterable<T> {
    return this.docs.values<T>(collection)
  }
  put(collection: string, id: string, doc: unknown): void {
    this.docs.put(collection, id, doc)
    this.touch(collection, id)
  }
  delete(collection: string, id: string): void {
    this.docs.delete(collection, id)
    this.touch(collection, id)
  }
  private touch(collection: string, id: string): void {
    let ids = this.dirty.get(collection)
    if (ids === undefined) this.dirty.set(collection, (ids = new Set()))
    ids.add(id)
    this.changed = true
  }
  clear(): void {
    for (const ids of this.dirty.values()) ids.clear()
    this.changed = false
  }
}

interface State {
  projection: Projection
  all: boolean
  types: ReadonlySet<string>
  tx: TrackingTx
  /** checkpoint stored in the read-model store (undefined: none) */
  stored: number | undefined
  /** position of the last event applied in memory */
  applied: number
  entries: EntryRow[]
  /** entries of a catch-up in bulk, committed before `entries` */
  columns: EntryColumns[]
}

export async function startProjectionRunner(options: RunnerOptions): Promise<ProjectionRunner> {
  const runner = new Runner(options)
  await runner.start()
  return runner
}

class Runner implements ProjectionRunner {
  private states: State[] = []
  private sub: Subscription | undefined
  private pos = 0
  private lastTime: string | undefined
  private pending = 0
  private committed = 0
  private chain: Promise<void> = Promise.resolve()
  /** outbox appends still running (a catch-up applies the next batch meanwhile) */
  private outbox: Promise<void> = Promise.resolve()
  private flushScheduled = false
  private stopping = false
  private isCaughtUp = false
  private restarting: Promise<void> | undefined
  private ticker: NodeJS.Timeout | undefined
  /** the catch-up in bulk, while it runs; `generation` moves on when it must stop early */
  private bulk: Promise<void> | undefined
  private generation = 0
  private readonly waiters = new Set<{ position: number; resolve: () => void; reject: (err: Error) => void }>()
  /** what ended a failFast runner */
  private failure: Error | undefined
  /** an apply or a commit failed: what is in memory past the stored checkpoints may hold half of
   * an event, so nothing more is committed until the read models are reloaded from the store */
  private discarding = false
  private resolveCaughtUp!: () => void
  private rejectCaughtUp!: (err: Error) => void
  readonly caughtUp: Promise<void>
  lastLag: Lag = { events: 0, seconds: 0 }
  readonly docs: Documents

  constructor(private readonly o: RunnerOptions) {
    this.caughtUp = new Promise<void>((resolve, reject) => {
      this.resolveCaughtUp = resolve
      this.rejectCaughtUp = reject
    })
    this.caughtUp.catch(() => {})
    const self = this
    this.docs = {
      get<T>(collection: string, id: string): T | undefined {
        for (const s of self.states) {
          const v = s.tx.get<T>(collection, id)
          if (v !== undefined) return v
        }
        return undefined
      },
      *values<T>(collection: string): Iterable<T> {
        for (const s of self.states) yield* s.tx.values<T>(collection)
      },
    }
  }

  get position(): number {
    return this.pos
  }

  async start(): Promise<void> {
    await this.load()
    this.follow()
    this.ticker = setInterval(() => this.tick(), this.o.tickMs ?? 1000)
    this.ticker.unref()
  }

  /** catch up (in bulk when the projections can), then subscribe */
  private follow(): void {
    const generation = this.generation
    this.bulk = this.catchUpInBulk(generation).then(
      () => {
        this.bulk = undefined
        if (generation === this.generation && !this.stopping) this.subscribe()
      },
      (err: unknown) => {
        this.bulk = undefined
        if (generation === this.generation) this.onError(asError(err))
      },
    )
  }

  /** (re)load every projection's stored documents and checkpoint; another version is reset */
  private async load(): Promise<void> {
    const states: State[] = []
    for (const projection of this.o.projections) {
      const docs = new MemoryDocuments()
      let stored = await this.o.readModels.load(projection.name)
      if (stored && stored.version !== projection.version) {
        this.o.log?.info(
          { projection: projection.name, stored: stored.version, current: projection.version },
          'projection version changed; rebuilding',
        )
        await this.o.readModels.reset(projection.name)
        stored = undefined
      } else if (stored?.incomplete) {
        this.o.log?.warn(
          { projection: projection.name, position: stored.position },
          'a from-zero load was interrupted before its index was written; rebuilding',
        )
        await this.o.readModels.reset(projection.name)
        stored = undefined
      }
      for (const [collection, id, doc] of stored?.docs ?? []) docs.put(collection, id, doc)
      states.push({
        projection,
        all: projection.eventTypes.includes(ALL_EVENTS[0]!),
        types: new Set(projection.eventTypes),
        tx: new TrackingTx(docs),
        stored: stored?.position,
        applied: stored?.position ?? 0,
        entries: [],
        columns: [],
      })
    }
    this.states = states
    this.discarding = false
    this.pos = states.length === 0 ? 0 : Math.min(...states.map((s) => s.applied))
    this.committed = this.pos
  }

  private subscribe(): void {
    this.sub = this.o.store.subscribe({
      after: this.pos,
      onEvent: (event) => this.onEvent(event),
      onCaughtUp: () => {
        void this.settle().then(
          () => {
            this.isCaughtUp = true
            this.resolveCaughtUp()
          },
          (err: unknown) => this.onError(asError(err)),
        )
      },
      onRetry: (err, delayMs) =>
        this.o.log?.warn({ err: err.message, delayMs }, 'projections: reading the event store failed; retrying'),
      onError: (err) => this.onError(err),
    })
  }

  /** Up to the current head when every all-events projection can apply the catch-up itself
   * (Projection.catchUp): those are advanced by their helpers, in batch-sized steps, and the
   * others are given their own event types, read with a filter, each at its position. */
  private async catchUpInBulk(generation: number): Promise<void> {
    const all = this.states.filter((s) => s.all)
    if (all.length === 0) return
    const head = await this.o.store.headPosition()
    const helpers = all.map((s) => s.projection.catchUp?.(this.o.store, s.applied, head))
    try {
      if (helpers.some((h) => h === undefined)) return
      const others = this.states.filter((s) => !s.all)
      const types = [...new Set(others.flatMap((s) => [...s.types]))]
      const batch = this.o.batchSize ?? 2000
      const current = (): boolean => generation === this.generation && !this.stopping
      let read = types.length === 0 ? head : this.pos
      let events: RecordedEvent[] = []
      let next = 0
      while (current() && this.pos < head) {
        // projections are independent: the helpers go to the batch's end in one step, then
        // the others are given their events up to it
        const target = Math.min(head, this.pos + batch)
        for (const [i, s] of all.entries()) {
          if (target <= s.applied) continue
          await helpers[i]!.applyThrough(s.tx, target, s.entries, s.columns)
          s.applied = target
        }
        for (;;) {
          if (next === events.length) {
            if (read >= target) break
            const got = await this.o.store.readAll({ after: read, maxCount: 1000, filter: { types } })
            events = got.filter((e) => e.position <= head)
            next = 0
            read = got.length < 1000 || events.length < got.length ? head : got.at(-1)!.position
            continue
          }
          const event = events[next]!
          if (event.position > target) break
          next++
          this.applyTo(others, event)
        }
        for (const s of others) if (s.applied < target) s.applied = target
        this.pending += target - this.pos
        this.pos = target
        if (this.pending >= batch) await this.flush()
      }
    } finally {
      await Promise.all(helpers.map((h) => h?.stop().catch(() => {})))
    }
  }

  /** apply an event to the projections of these states that have not seen it */
  private applyTo(states: readonly State[], event: RecordedEvent): void {
    for (const s of states) {
      if (event.position <= s.applied) continue
      if (s.all || s.types.has(event.type)) {
        const entry = s.projection.apply(s.tx, event)
        if (entry) s.entries.push({ position: event.position, eventId: event.id, time: event.time, entry })
      }
      s.applied = event.position
    }
    this.lastTime = event.time
  }

  private onEvent(event: RecordedEvent): Promise<void> | void {
    this.applyTo(this.states, event)
    this.pos = event.position
    if (++this.pending >= (this.o.batchSize ?? 2000)) return this.flush()
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => {
        this.flushScheduled = false
        void this.flush().catch((err: unknown) => this.onError(asError(err)))
      })
    }
  }

  private onError(err: Error): void {
    this.discarding = true
    if (this.stopping || this.failure) return
    if (this.o.failFast) {
      this.failure = err
      this.generation++
      this.rejectCaughtUp(err)
      for (const w of this.waiters) w.reject(err)
      this.waiters.clear()
      return
    }
    if (isKennelError(err, 'KENNEL_ERR_WRONG_EXPECTED_REVISION')) {
      this.o.log?.warn({ err: err.message }, 'read models were moved by another process; reloading')
      void this.restart(0)
      return
    }
    this.o.log?.error({ err }, 'projection runner failed; retrying')
    if (!this.isCaughtUp && isKennelError(err, 'KENNEL_ERR_EVENTSTORE_CLOSED')) {
      this.rejectCaughtUp(err)
      return
    }
    void this.restart(RESTART_RETRY_MS)
  }

  private restart(delayMs: number): Promise<void> {
    let failed = false
    this.restarting ??= (async () => {
      this.generation++
      await this.bulk
      await this.sub?.stop()
      this.sub = undefined
      await this.chain.catch(() => {})
      await this.outbox
      // what a from-zero load buffered matches the stored checkpoint unless another writer moved it
      await this.o.readModels.settle().catch(() => {})
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs))
      if (this.stopping) return
      await this.load()
      this.pending = 0
      this.committed = this.pos
      this.follow()
    })()
      .catch((err: unknown) => {
        // the read-model store or the event store is still away (a database restarting): try again
        this.o.log?.error({ err }, 'projection runner could not restart; retrying')
        failed = true
      })
      .finally(() => {
        this.restarting = undefined
        if (failed && !this.stopping) void this.restart(RESTART_RETRY_MS)
      })
    return this.restarting
  }

  /** commit what has been applied so far and write any index a from-zero load deferred */
  private settle(): Promise<void> {
    const next = this.chain.then(async () => {
      await this.commit()
      await this.outbox
      await this.o.readModels.settle()
    })
    this.chain = next.catch(() => {})
    return next
  }

  /** commit what has been applied so far; serialised with earlier flushes */
  private flush(): Promise<void> {
    const next = this.chain.then(() => this.commit())
    this.chain = next.catch(() => {})
    return next
  }

  private async commit(): Promise<void> {
    if (this.discarding) return
    const changes: ProjectionChanges[] = []
    for (const s of this.states) {
      if (s.applied === s.stored && !s.tx.changed) continue
      const puts: ProjectionChanges['puts'] = []
      const deletes: ProjectionChanges['deletes'] = []
      for (const [collection, ids] of s.tx.dirty) {
        for (const id of ids) {
          const doc = s.tx.docs.get(collection, id)
          if (doc === undefined) deletes.push([collection, id])
          else puts.push([collection, id, JSON.stringify(doc)])
        }
      }
      changes.push({
        name: s.projection.name,
        version: s.projection.version,
        expectedPosition: s.stored,
        position: s.applied,
        puts,
        deletes,
        entries: s.entries,
        columns: s.columns,
        catchingUp: !this.isCaughtUp,
      })
      s.tx.clear()
      s.entries = []
      s.columns = []
    }
    this.pending = 0
    const position = this.pos
    if (changes.length > 0) {
      this.o.beforeCommit?.(position)
      try {
        await this.o.readModels.commit(changes)
      } catch (err) {
        // the changes were taken out of memory above and are not stored: from here on memory is
        // behind, so a flush queued behind this one must not commit (onError may come later,
        // through the subscription)
        this.discarding = true
        throw err
      }
      for (const c of changes) {
        const s = this.states.find((x) => x.projection.name === c.name)
        if (s) s.stored = c.position
      }
      this.o.onCommit?.(position)
    }
    this.committed = Math.max(this.committed, position)
    for (const w of this.waiters) if (w.position <= position) this.waiters.delete(w), w.resolve()
    // appends wait for the event store's durable commit: while catching up the next batch is
    // applied meanwhile (one drain at a time, in order; settle waits for them)
    this.outbox = this.outbox.then(() => this.drainOutbox())
    if (this.isCaughtUp) await this.outbox
  }

  private async drainOutbox(): Promise<void> {
    for (const s of this.states) {
      for (const entry of [...s.tx.values<OutboxEntry>(OUTBOX)]) {
        try {
          await this.o.store.append(entry.stream, [entry.event])
          s.tx.delete(OUTBOX, entry.event.id)
        } catch (err) {
          // kept in the outbox; the next commit retries it
          this.o.log?.warn({ err, stream: entry.stream, id: entry.event.id }, 'could not append a projection event')
          return
        }
      }
    }
  }

  private tick(): void {
    if (!this.isCaughtUp || this.stopping) return
    const now = new Date()
    let wrote = false
    for (const s of this.states) {
      if (!s.projection.tick) continue
      s.projection.tick(s.tx, now)
      wrote ||= s.tx.changed
    }
    if (wrote) void this.flush().catch((err: unknown) => this.onError(asError(err)))
  }

  waitFor(target: number, timeoutMs = 5000): Promise<void> {
    if (target <= this.committed) return Promise.resolve()
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      const w = {
        position: target,
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (err: Error) => (clearTimeout(timer), reject(err)),
      }
      const timer = setTimeout(
        () => (
          this.waiters.delete(w),
          reject(new Error(`read model did not reach position ${target} within ${timeoutMs} ms`))
        ),
        timeoutMs,
      )
      this.waiters.add(w)
    })
  }

  async lag(): Promise<Lag> {
    const head = await this.o.store.headPosition()
    const events = Math.max(0, head - this.pos)
    const seconds = events > 0 && this.lastTime ? Math.max(0, (Date.now() - Date.parse(this.lastTime)) / 1000) : 0
    this.lastLag = { events, seconds }
    return this.lastLag
  }

  async stop(): Promise<void> {
    this.stopping = true
    if (this.ticker) clearInterval(this.ticker)
    await this.restarting
    await this.bulk
    await this.sub?.stop()
    await this.settle().catch((err: unknown) => this.o.log?.warn({ err }, 'final read-model commit failed'))
  }
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)))
