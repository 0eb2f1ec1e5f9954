import t from 'tap'
import { KennelError } from '../../../infra/errors.ts'
import type { RecordedEvent, SubscribeOptions } from '../../../infra/eventstore/port.ts'
import { type AppendedEvent, LiveFeed } from '../../../infra/eventstore/subscription.ts'

// The live feed behind the embedded and PostgreSQL stores, over an in-memory "store" whose reads
// are counted and fail on demand (the adapters' own tests and the contract run it on real ones).

const event = (position: number, type = 'X', stream = 's'): RecordedEvent => ({
  id: `e${position}`,
  stream,
  type,
  revision: position - 1,
  position,
  time: new Date(0).toISOString(),
  data: { position },
  metadata: {},
})

const appended = (e: RecordedEvent): AppendedEvent => ({
  position: e.position,
  stream: e.stream,
  type: e.type,
  recorded: () => e,
})

function harness(options: { fail?: (call: number) => Error | undefined; maxQueued?: number; head?: number } = {}) {
  const stored: RecordedEvent[] = []
  for (let p = 1; p <= (options.head ?? 0); p++) stored.push(event(p))
  const reads: Array<[number, number]> = []
  let calls = 0
  const feed = new LiveFeed(
    {
      async readRange(after, upTo, max, filter) {
        const err = options.fail?.(++calls)
        if (err) throw err
        reads.push([after, upTo])
        return stored
          .filter((e) => e.position > after && e.position <= upTo && (!filter?.types || filter.types.includes(e.type)))
          .slice(0, max)
      },
      async head() {
        return stored.at(-1)?.position ?? 0
      },
    },
    options.head ?? 0,
    { intervalMs: 60_000, tick: () => {} },
    { maxQueued: options.maxQueued ?? 100, batch: 10 },
  )
  t.teardown(() => feed.stopAll())
  /** commit events in the "store" (another process's, or ours not yet acknowledged) */
  const commit = (n: number, type = 'X'): RecordedEvent[] => {
    const out = Array.from({ length: n }, (_, i) => event(stored.length + 1 + i, type))
    stored.push(...out)
    return out
  }
  return {
    feed,
    reads,
    commit,
    get calls() {
      return calls
    },
  }
}

function collect(feed: LiveFeed, options: Partial<SubscribeOptions> = {}) {
  const got: number[] = []
  const checkpoints: number[] = []
  let caughtUp!: () => void
  const ready = new Promise<void>((r) => (caughtUp = r))
  const sub = feed.subscribe({
    onEvent: (e) => void got.push(e.position),
    onCaughtUp: () => caughtUp(),
    onCheckpoint: (p) => void checkpoints.push(p),
    ...options,
  })
  t.teardown(() => sub.stop())
  return { got, checkpoints, ready, sub }
}

const until = async (ok: () => boolean): Promise<void> => {
  while (!ok()) await new Promise((r) => setTimeout(r, 2))
}

t.test(
  'events of our own batches are delivered from the append, in position order even when acknowledged out of order, without a read',
  async (t) => {
    const h = harness({ head: 3 })
    const s = collect(h.feed)
    await s.ready
    const readsAtJoin = h.reads.length
    const first = h.feed.sending()
    const second = h.feed.sending()
    const a = h.commit(2) // 4, 5: the first batch to take the lock
    const b = h.commit(3) // 6, 7, 8
    h.feed.settled(second, a.map(appended))
    h.feed.settled(first, b.map(appended))
    await until(() => s.got.length === 8)
    t.same(s.got, [1, 2, 3, 4, 5, 6, 7, 8], 'the catch-up read, then both batches in order')
    t.equal(h.reads.length, readsAtJoin, 'no read for events this process appended')
  },
)

t.test(
  'a gap left by another process is read once nothing of ours in flight can fill it, then our batch follows',
  async (t) => {
    const h = harness()
    const s = collect(h.feed)
    await s.ready
    const ticket = h.feed.sending()
    const other = h.feed.sending()
    h.commit(2) // 1, 2: another process
    const ours = h.commit(1) // 3
    h.feed.settled(ticket, ours.map(appended))
    await new Promise((r) => setTimeout(r, 20))
    t.same(s.got, [], 'nothing delivered while a batch in flight may hold positions 1 and 2')
    t.same(h.reads, [], 'and nothing read')
    h.feed.settled(other, [])
    await until(() => s.got.length === 3)
    t.same(s.got, [1, 2, 3], 'the gap, read, before our event')
    t.same(h.reads, [[0, 2]], 'one read of exactly the gap')
  },
)

t.test(
  'a poll that saw a commit by another process makes the feed read it; our own commits it saw cost nothing',
  async (t) => {
    const h = harness({ head: 1 })
    const s = collect(h.feed)
    await s.ready
    const ticket = h.feed.sending()
    const ours = h.commit(2) // 2, 3, committed but not yet acknowledged when the poll looks
    h.feed.poke()
    h.feed.settled(ticket, ours.map(appended))
    await until(() => s.got.length === 3)
    const reads = h.reads.length
    h.commit(1) // 4: another process, nothing of ours after it
    h.feed.poke()
    await until(() => s.got.length === 4)
    t.same(s.got, [1, 2, 3, 4])
    t.equal(h.reads.length, reads + 1, 'one read, for the other process only')
  },
)

t.test(
  "under a steady flow of our own batches a poll costs no read of them; another process's commit comes in as the gap before our next batch",
  async (t) => {
    const h = harness({ head: 1 })
    const s = collect(h.feed)
    await s.ready
    const reads = h.reads.length
    // each batch is sent before the one before it is acknowledged, and committed at once: every
    // poll sees a commit of ours that no acknowledgement has brought yet
    let ticket = h.feed.sending()
    let batch = h.commit(2)
    for (let i = 0; i < 5; i++) {
      h.feed.poke()
      const next = h.feed.sending()
      const nextBatch = h.commit(2)
      h.feed.settled(ticket, batch.map(appended))
      await new Promise((r) => setTimeout(r, 5))
      ;[ticket, batch] = [next, nextBatch]
    }
    t.equal(h.reads.length, reads, 'no read while our batches flow')
    h.commit(1) // another process, between two batches of ours
    h.feed.poke()
    const next = h.feed.sending()
    const nextBatch = h.commit(2)
    h.feed.settled(ticket, batch.map(appended))
    h.feed.settled(next, nextBatch.map(appended))
    await until(() => s.got.length === 16)
    t.same(
      s.got,
      Array.from({ length: 16 }, (_, i) => i + 1),
      'every event once, in order',
    )
    t.equal(h.reads.length, reads + 1, "one read: the other process's event")
  },
)

t.test('a filtered subscription is given only its events, and checkpoints past the others', async (t) => {
  const h = harness()
  const s = collect(h.feed, { filter: { types: ['Y'] } })
  await s.ready
  const ticket = h.feed.sending()
  const batch = [...h.commit(1, 'X'), ...h.commit(1, 'Y'), ...h.commit(2, 'X')]
  h.feed.settled(ticket, batch.map(appended))
  await until(() => s.checkpoints.includes(4))
  t.same(s.got, [2])
  t.same(s.checkpoints.at(-1), 4, 'it has seen everything up to the batch end')
})

t.test(
  'a subscription that starts behind catches up from its checkpoint, then is fed, with no gap and no duplicate',
  async (t) => {
    const h = harness({ head: 25 })
    const early = collect(h.feed)
    await early.ready
    const ticket = h.feed.sending()
    h.feed.settled(ticket, h.commit(5).map(appended))
    const late = collect(h.feed, { after: 7 })
    await late.ready
    const next = h.feed.sending()
    h.feed.settled(next, h.commit(5).map(appended))
    await until(() => late.got.length === 35 - 7)
    t.same(
      late.got,
      Array.from({ length: 35 - 7 }, (_, i) => 8 + i),
    )
  },
)

t.test('a subscription too far behind leaves the feed and reads the store, and misses nothing', async (t) => {
  const h = harness({ maxQueued: 5 })
  let release!: () => void
  const held = new Promise<void>((r) => (release = r))
  const got: number[] = []
  let live = false
  const sub = h.feed.subscribe({
    onEvent: async (e) => (got.push(e.position), e.position === 1 ? held : undefined),
    onCaughtUp: () => (live = true),
  })
  t.teardown(() => sub.stop())
  await until(() => live)
  for (let i = 0; i < 6; i++) {
    const ticket = h.feed.sending()
    h.feed.settled(ticket, h.commit(4).map(appended))
  }
  await new Promise((r) => setTimeout(r, 10))
  const readsWhileHeld = h.reads.length
  release()
  await until(() => got.length === 24)
  t.same(
    got,
    Array.from({ length: 24 }, (_, i) => i + 1),
    'every event once, in order',
  )
  t.ok(h.reads.length > readsWhileHeld, 'the overflowed part was read from the store')
})

t.test('failed reads are retried with backoff from the same position; stop() ends a backoff', async (t) => {
  const h = harness({ head: 3, fail: (call) => (call === 1 || call === 2 ? new Error('connection reset') : undefined) })
  const retries: number[] = []
  const s = collect(h.feed, { onRetry: (_e, ms) => void retries.push(ms) })
  await s.ready
  t.same(s.got, [1, 2, 3])
  t.same(retries, [100, 200])

  const down = harness({ head: 1, fail: () => new Error('database restarting') })
  const backoffs: number[] = []
  let stopped: Error | undefined
  const sub = down.feed.subscribe({
    onEvent: () => {},
    onRetry: (_e, ms) => void backoffs.push(ms),
    onError: (err) => (stopped = err),
  })
  await until(() => backoffs.length >= 4)
  const first = await Promise.race([
    sub.stop().then(() => 'stopped'),
    new Promise((r) => setTimeout(r, 500, 'still waiting').unref()),
  ])
  t.equal(first, 'stopped', 'stop() ends the backoff')
  const calls = down.calls
  await new Promise((r) => setTimeout(r, 1000))
  t.equal(down.calls, calls, 'no read after stop()')
  t.equal(stopped, undefined, 'a stop is not an error')
})

t.test('a closed store and a throwing handler end the subscription with the error', async (t) => {
  const closed = harness({
    head: 1,
    fail: () => new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed'),
  })
  let reported: Error | undefined
  const a = closed.feed.subscribe({ onEvent: () => {}, onError: (err) => (reported = err) })
  await a.closed
  t.match(reported, { code: 'KENNEL_ERR_EVENTSTORE_CLOSED' })
  t.equal(closed.calls, 1, 'not retried')

  const h = harness({ head: 1 })
  reported = undefined
  const b = h.feed.subscribe({
    onEvent: () => {
      throw new Error('handler bug')
    },
    onError: (err) => (reported = err),
  })
  await b.closed
  t.match(reported, { message: 'handler bug' })
  let live: Error | undefined
  let caughtUp = false
  const c = h.feed.subscribe({
    onEvent: (e) => {
      if (e.position === 2) throw new Error('live handler bug')
    },
    onCaughtUp: () => (caughtUp = true),
    onError: (err) => (live = err),
  })
  await until(() => caughtUp)
  const ticket = h.feed.sending()
  h.feed.settled(ticket, h.commit(1).map(appended))
  await c.closed
  t.match(live, { message: 'live handler bug' }, 'a throw on a fed event too')
})

t.test(
  'the queue of a subscription that is always a little behind does not grow with the events it has delivered',
  async (t) => {
    const h = harness({ maxQueued: 1_000_000 })
    const total = 20_000
    let delivered = 0
    let live = false
    const sub = h.feed.subscribe({
      onEvent: async () => {
        delivered++
        await new Promise((r) => setImmediate(r))
      },
      onCaughtUp: () => (live = true),
    })
    await until(() => live)
    const queueLength = (): number => (sub as unknown as { queue: unknown[] }).queue.length
    let longest = 0
    // a backlog of 50, then one event per turn, as fast as the handler takes them
    const ticket = h.feed.sending()
    h.feed.settled(ticket, h.commit(50).map(appended))
    for (let i = 50; i < total; i++) {
      const next = h.feed.sending()
      h.feed.settled(next, h.commit(1).map(appended))
      longest = Math.max(longest, queueLength())
      await new Promise((r) => setImmediate(r))
    }
    await until(() => delivered === total)
    t.ok(longest < total / 2, `the queue held at most ${longest} entries for ${total} events`)
  },
)

t.test('a read that fails after every subscription stopped (the store closing under it) is not retried', async (t) => {
  let reject!: (err: Error) => void
  let reading = false
  const feed = new LiveFeed(
    {
      readRange: () => ((reading = true), new Promise((_, r) => (reject = r))),
      head: async () => 0,
    },
    0,
    { intervalMs: 60_000, tick: () => {} },
  )
  let live = false
  const retries: number[] = []
  feed.subscribe({ onEvent: () => {}, onCaughtUp: () => (live = true), onRetry: (_e, ms) => void retries.push(ms) })
  await until(() => live)
  // a batch of ours after a gap: the feed reads the gap, and the read hangs
  const ticket = feed.sending()
  feed.settled(ticket, [appended(event(5))])
  await until(() => reading)
  await feed.stopAll()
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
  const before = timers()
  reject(new Error('Connection terminated'))
  await new Promise((r) => setImmediate(r))
  t.equal(timers(), before, 'no backoff timer keeps the process alive')
  t.same(retries, [])
})
