import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { KennelError, isKennelError } from '../../../infra/errors.ts'
import type { EventStore, RecordedEvent } from '../../../infra/eventstore/port.ts'
import { WrongExpectedRevisionError } from '../../../infra/eventstore/port.ts'

// The event-store contract, written once and run against every adapter.

export interface ContractTarget {
  /** a fresh, empty store: its URL (for child processes) and a way to open it */
  fresh(): Promise<{ url: string; open(environment?: string): Promise<EventStore> }>
}

const here = path.dirname(fileURLToPath(import.meta.url))
const ev = (type: string, data: unknown = {}, id?: string) => ({ id, type, data, metadata: { actor: 'test:contract' } })

async function opened(t: Test, target: ContractTarget): Promise<EventStore> {
  const { open } = await target.fresh()
  const store = await open()
  t.teardown(() => store.close())
  return store
}

function collect(store: EventStore, after = 0, filter?: { streamPrefixes?: string[]; types?: string[] }) {
  const events: RecordedEvent[] = []
  let caughtUp = 0
  let resolveCaughtUp: () => void
  const caughtUpOnce = new Promise<void>((r) => (resolveCaughtUp = r))
  const waiters: Array<{ n: number; resolve: () => void }> = []
  const sub = store.subscribe({
    after,
    filter,
    onEvent: (e) => {
      events.push(e)
      for (const w of waiters.filter((w) => events.length >= w.n)) w.resolve()
    },
    onCaughtUp: () => {
      caughtUp++
      resolveCaughtUp()
    },
  })
  return {
    events,
    sub,
    get caughtUpCount() {
      return caughtUp
    },
    caughtUp: caughtUpOnce,
    waitFor(n: number, timeoutMs = 10_000): Promise<void> {
      if (events.length >= n) return Promise.resolve()
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${n} events, have ${events.length}`)),
          timeoutMs,
        )
        waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) })
      })
    },
  }
}

export function eventStoreContract(t: Test, target: ContractTarget): void {
  t.test('revisions count from 0 and positions increase over all streams', async (t) => {
    const store = await opened(t, target)
    const a = await store.append('a-1', [ev('Happened'), ev('Happened')], { expectedRevision: 'no_stream' })
    const b = await store.append('b-1', [ev('Happened')])
    t.equal(a.nextExpectedRevision, 1)
    t.equal(b.nextExpectedRevision, 0)
    t.ok(b.position > a.position, 'global position grows across streams')
    const all = await store.readAll()
    t.same(
      all.map((e) => [e.stream, e.revision]),
      [
        ['a-1', 0],
        ['a-1', 1],
        ['b-1', 0],
      ],
    )
    t.ok(all.every((e, i) => i === 0 || e.position > all[i - 1]!.position))
    t.equal(await store.headPosition(), b.position)
    t.match(all[0], { type: 'Happened', data: {}, metadata: { actor: 'test:contract' } })
    t.ok(!Number.isNaN(Date.parse(all[0]!.time)), 'time is ISO 8601')
  })

  t.test('expected revision: no_stream, stream_exists, a number; conflicts carry expected and actual', async (t) => {
    const store = await opened(t, target)
    await t.rejects(store.append('s', [ev('X')], { expectedRevision: 'stream_exists' }), WrongExpectedRevisionError)
    await store.append('s', [ev('X')], { expectedRevision: 'no_stream' })
    const err = await store.append('s', [ev('X')], { expectedRevision: 'no_stream' }).catch((e: unknown) => e)
    t.type(err, WrongExpectedRevisionError)
    t.match(err, { code: 'KENNEL_ERR_WRONG_EXPECTED_REVISION', expected: 'no_stream', actual: 0 })
    await store.append('s', [ev('X')], { expectedRevision: 'stream_exists' })
    await store.append('s', [ev('X')], { expectedRevision: 1 })
    const stale = await store.append('s', [ev('X')], { expectedRevision: 1 }).catch((e: unknown) => e)
    t.match(stale, { expected: 1, actual: 2 })
    const ahead = await store.append('s', [ev('X')], { expectedRevision: 7 }).catch((e: unknown) => e)
    t.match(ahead, { expected: 7, actual: 2 })
    const missing = await store.append('nope', [ev('X')], { expectedRevision: 0 }).catch((e: unknown) => e)
    t.match(missing, { expected: 0, actual: 'no_stream' })
    t.equal((await store.readStream('s')).length, 3, 'failed appends wrote nothing')
    t.equal((await store.readStream('nope')).length, 0)
  })

  t.test('bad arguments are refused with a validation error and write nothing', async (t) => {
    const store = await opened(t, target)
    const cases: Array<[string, unknown[], unknown]> = [
      ['', [ev('X')], 'any'],
      ['$all', [ev('X')], 'any'],
      ['s', [], 'any'],
      ['s', [ev('X', {}, 'not-a-uuid')], 'any'],
      ['s', [ev('bad type!')], 'any'],
      ['s', [ev('X')], -1],
      ['s', [ev('X')], 1.5],
    ]
    for (const [stream, events, expected] of cases) {
      const err = await store
        .append(stream, events as never, { expectedRevision: expected as never })
        .catch((e: unknown) => e)
      t.ok(isKennelError(err, 'KENNEL_ERR_VALIDATION'), `refused ${JSON.stringify([stream, expected])}`)
    }
    const id = randomUUID()
    const dup = await store.append('s', [ev('X', {}, id), ev('X', {}, id)]).catch((e: unknown) => e)
    t.ok(isKennelError(dup, 'KENNEL_ERR_VALIDATION'), 'the same id twice in one append')
    const unserialisable = await store.append('s', [ev('X'), ev('X', { n: 1n })]).catch((e: unknown) => e)
    t.ok(isKennelError(unserialisable, 'KENNEL_ERR_VALIDATION'), 'data that is not JSON')
    t.same(await store.readAll(), [])
  })

  t.test('an append retried with the same event ids is idempotent; a partial overlap is a conflict', async (t) => {
    const store = await opened(t, target)
    const ids = [randomUUID(), randomUUID()]
    const first = await store.append(
      'idem',
      ids.map((id) => ev('X', { id }, id)),
      { expectedRevision: 'no_stream' },
    )
    const again = await store.append(
      'idem',
      ids.map((id) => ev('X', { id }, id)),
      { expectedRevision: 'no_stream' },
    )
    t.same(again, first, 'retry with the original expected revision returns the original result')
    const any = await store.append(
      'idem',
      ids.map((id) => ev('X', { id }, id)),
      { expectedRevision: 'any' },
    )
    t.same(any, first, 'retry with any is idempotent too')
    await store.append('idem', [ev('Y')])
    const later = await store.append(
      'idem',
      ids.map((id) => ev('X', { id }, id)),
      { expectedRevision: 'no_stream' },
    )
    t.same(later, first, 'still idempotent after the stream moved on')
    const partial = await store
      .append('idem', [ev('X', {}, ids[1]), ev('X', {}, randomUUID())])
      .catch((e: unknown) => e)
    t.ok(partial instanceof KennelError && partial.httpStatus === 409, 'partial overlap is a conflict')
    const elsewhere = await store.append('other', [ev('X', {}, ids[0])]).catch((e: unknown) => e)
    t.ok(
      elsewhere instanceof KennelError && elsewhere.httpStatus === 409,
      'an id stored in another stream is a conflict',
    )
    const wrongRev = await store
      .append(
        'idem',
        ids.map((id) => ev('X', {}, id)),
        { expectedRevision: 5 },
      )
      .catch((e: unknown) => e)
    t.type(wrongRev, WrongExpectedRevisionError, 'same ids at another expected revision is a conflict')
    t.equal((await store.readAll()).length, 3, 'nothing extra was written')
  })

  t.test('appends made at the same moment each keep their own outcome', async (t) => {
    const store = await opened(t, target)
    await store.append('same-1', [ev('X')])
    const outcomes = (...appends: Array<Promise<unknown>>) =>
      Promise.allSettled(appends).then((r) =>
        r.map((o) => (o.status === 'fulfilled' ? 'ok' : (o.reason as KennelError).code)),
      )
    const distinct = await outcomes(
      store.append('same-1', [ev('X'), ev('X')], { expectedRevision: 0 }),
      store.append('same-2', [ev('X')], { expectedRevision: 3 }),
      store.append('same-3', [ev('X')], { expectedRevision: 'no_stream' }),
      store.append('same-4', [ev('X')], { expectedRevision: 'stream_exists' }),
    )
    t.same(
      distinct,
      ['ok', 'KENNEL_ERR_WRONG_EXPECTED_REVISION', 'ok', 'KENNEL_ERR_WRONG_EXPECTED_REVISION'],
      'different streams',
    )
    const id = randomUUID()
    const shared = await outcomes(
      store.append('same-3', [ev('X', {}, id)], { expectedRevision: 0 }),
      store.append('same-3', [ev('X', {}, id)], { expectedRevision: 0 }),
      store.append('same-3', [ev('X')], { expectedRevision: 0 }),
      store.append('same-5', [ev('X', {}, id)]),
    )
    t.same(
      shared,
      ['ok', 'ok', 'KENNEL_ERR_WRONG_EXPECTED_REVISION', 'KENNEL_ERR_DUPLICATE_EVENT'],
      'one stream, and an id used twice',
    )
    t.same(
      (await store.readAll()).map((e) => [e.stream, e.revision]),
      [
        ['same-1', 0],
        ['same-1', 1],
        ['same-1', 2],
        ['same-3', 0],
        ['same-3', 1],
      ],
    )
    const all = await store.readAll()
    t.ok(
      all.every((e, i) => i === 0 || e.position > all[i - 1]!.position),
      'positions increase',
    )
  })

  t.test('concurrent read-decide-append loops lose no update', async (t) => {
    const store = await opened(t, target)
    const workers = 8
    const perWorker = 15
    let conflicts = 0
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        for (let i = 0; i < perWorker; i++) {
          for (;;) {
            const last = (await store.readStream('counter', { direction: 'backwards', maxCount: 1 }))[0]
            const value = last ? (last.data as { value: number }).value : 0
            try {
              await store.append('counter', [ev('Incremented', { value: value + 1, by: w })], {
                expectedRevision: last ? last.revision : 'no_stream',
              })
              break
            } catch (err) {
              if (!(err instanceof WrongExpectedRevisionError)) throw err
              conflicts++
            }
          }
        }
      }),
    )
    const events = await store.readStream('counter')
    t.equal(events.length, workers * perWorker)
    t.same(
      events.map((e) => (e.data as { value: number }).value),
      events.map((_, i) => i + 1),
      'every increment saw the one before it',
    )
    t.ok(conflicts > 0, `the workers really raced (${conflicts} conflicts)`)
  })

  t.test('reads forwards and backwards, by stream and over all, with bounds and counts', async (t) => {
    const store = await opened(t, target)
    for (let i = 0; i < 5; i++) {
      await store.append('r-a', [ev('A', { i })])
      await store.append('r-b', [ev('B', { i })])
    }
    const fwd = await store.readStream('r-a')
    t.same(
      fwd.map((e) => e.revision),
      [0, 1, 2, 3, 4],
    )
    t.same(
      (await store.readStream('r-a', { direction: 'backwards' })).map((e) => e.revision),
      [4, 3, 2, 1, 0],
    )
    t.same(
      (await store.readStream('r-a', { fromRevision: 2, maxCount: 2 })).map((e) => e.revision),
      [2, 3],
    )
    t.same(
      (await store.readStream('r-a', { direction: 'backwards', fromRevision: 2 })).map((e) => e.revision),
      [2, 1, 0],
    )
    t.same(await store.readStream('missing'), [])
    const all = await store.readAll()
    t.equal(all.length, 10)
    const back = await store.readAll({ direction: 'backwards' })
    t.same(
      back.map((e) => e.id),
      all.map((e) => e.id).reverse(),
    )
    const page = await store.readAll({ after: all[3]!.position, maxCount: 3 })
    t.same(
      page.map((e) => e.id),
      all.slice(4, 7).map((e) => e.id),
    )
    const before = await store.readAll({ direction: 'backwards', before: all[3]!.position, maxCount: 2 })
    t.same(
      before.map((e) => e.id),
      [all[2]!.id, all[1]!.id],
    )
    const onlyB = await store.readAll({ filter: { streamPrefixes: ['r-b'] } })
    t.same(
      onlyB.map((e) => e.type),
      ['B', 'B', 'B', 'B', 'B'],
    )
    const onlyA = await store.readAll({ filter: { types: ['A'] }, maxCount: 2 })
    t.same(
      onlyA.map((e) => e.stream),
      ['r-a', 'r-a'],
    )
  })

  t.test(
    'reads filtered by several types (and stream prefixes) keep global order, bounds and counts, both ways',
    async (t) => {
      const store = await opened(t, target)
      const types = ['A', 'B', 'C', 'D']
      for (let i = 0; i < 60; i++) await store.append(`s-${i % 3}`, [ev(types[(i * 7) % 4]!, { i })])
      const all = await store.readAll()
      const want = (f: (e: RecordedEvent) => boolean, events: RecordedEvent[]): string[] =>
        events.filter(f).map((e) => e.id)
      const ids = (events: RecordedEvent[]): string[] => events.map((e) => e.id)
      const bc = (e: RecordedEvent): boolean => e.type === 'B' || e.type === 'C'
      t.same(
        ids(await store.readAll({ filter: { types: ['C', 'B'] } })),
        want(bc, all),
        'every B and C, in global order',
      )
      t.same(
        ids(await store.readAll({ filter: { types: ['C', 'B', 'C'] }, after: all[10]!.position, maxCount: 7 })),
        want(bc, all.slice(11)).slice(0, 7),
        'a page after a position',
      )
      t.same(
        ids(
          await store.readAll({
            filter: { types: ['B', 'C'] },
            direction: 'backwards',
            before: all[50]!.position,
            maxCount: 5,
          }),
        ),
        want(bc, all.slice(0, 50).reverse()).slice(0, 5),
        'a page backwards',
      )
      const inS1 = (e: RecordedEvent): boolean => bc(e) && e.stream === 's-1'
      t.same(
        ids(await store.readAll({ filter: { types: ['B', 'C'], streamPrefixes: ['s-1'] }, maxCount: 6 })),
        want(inS1, all).slice(0, 6),
        'with a stream prefix, the count is of matching events',
      )
      t.same(await store.readAll({ filter: { types: ['B', 'C'] }, maxCount: 0 }), [], 'maxCount 0')
      t.same(await store.readAll({ filter: { types: ['X', 'Y'] } }), [], 'no such types')
    },
  )

  t.test('a subscription catches up, then goes live, with no gap and no duplicate while writers append', async (t) => {
    const store = await opened(t, target)
    for (let i = 0; i < 120; i++) await store.append(`pre-${i % 7}`, [ev('Pre', { i })])
    const s = collect(store)
    t.teardown(() => s.sub.stop())
    const writers = 6
    const perWriter = 60
    const writing = Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < perWriter; i++) {
          await store.append(`live-${w}`, [ev('Live', { w, i }), ev('Live', { w, i, second: true })])
          if (i % 10 === 0) await new Promise((r) => setTimeout(r, 1))
        }
      }),
    )
    await s.caughtUp
    await writing
    const total = 120 + writers * perWriter * 2
    await s.waitFor(total)
    await new Promise((r) => setTimeout(r, 50))
    t.equal(s.events.length, total, 'every event exactly once')
    t.equal(new Set(s.events.map((e) => e.id)).size, total, 'no duplicate')
    t.ok(
      s.events.every((e, i) => i === 0 || e.position > s.events[i - 1]!.position),
      'global order',
    )
    t.same(
      s.events.map((e) => e.id),
      (await store.readAll()).map((e) => e.id),
      'the same sequence a reader sees',
    )
    t.equal(s.caughtUpCount, 1, 'one caughtUp signal')
  })

  t.test('a subscription resumes after a checkpoint and honours filters', async (t) => {
    const store = await opened(t, target)
    for (let i = 0; i < 10; i++)
      await store.append(i % 2 ? 'device-1' : 'account-1', [ev(i % 3 ? 'Seen' : 'Other', { i })])
    const all = await store.readAll()
    const resumed = collect(store, all[5]!.position)
    t.teardown(() => resumed.sub.stop())
    await resumed.caughtUp
    t.same(
      resumed.events.map((e) => e.id),
      all.slice(6).map((e) => e.id),
      'exclusive of the checkpoint',
    )
    const filtered = collect(store, 0, { streamPrefixes: ['device-'], types: ['Seen'] })
    t.teardown(() => filtered.sub.stop())
    await filtered.caughtUp
    const expected = all.filter((e) => e.stream.startsWith('device-') && e.type === 'Seen')
    t.same(
      filtered.events.map((e) => e.id),
      expected.map((e) => e.id),
    )
    await store.append('device-2', [ev('Seen'), ev('Other')])
    await store.append('account-2', [ev('Seen')])
    await filtered.waitFor(expected.length + 1)
    await new Promise((r) => setTimeout(r, 50))
    t.equal(filtered.events.length, expected.length + 1, 'live events are filtered too')
  })

  t.test('a filtered subscription reports how far it has read past the events it leaves out', async (t) => {
    const store = await opened(t, target)
    const checkpoints: number[] = []
    const got: string[] = []
    let caughtUp!: () => void
    const ready = new Promise<void>((r) => (caughtUp = r))
    const sub = store.subscribe({
      filter: { types: ['Wanted'] },
      onEvent: (e) => void got.push(e.type),
      onCheckpoint: (p) => void checkpoints.push(p),
      onCaughtUp: () => caughtUp(),
    })
    t.teardown(() => sub.stop())
    await ready
    await store.append('c-1', [ev('Wanted')])
    const last = await store.append('c-2', [ev('Other'), ev('Other')])
    const deadline = Date.now() + 10_000
    while (!checkpoints.some((p) => p >= last.position) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5))
    t.ok(
      checkpoints.some((p) => p >= last.position),
      'a checkpoint at or past the last event it left out',
    )
    t.same(got, ['Wanted'])
    t.ok(
      checkpoints.every((p, i) => i === 0 || p >= checkpoints[i - 1]!),
      'checkpoints do not go back',
    )
  })

  t.test(
    'events from this handle and another (another process) reach a subscription in order, as a reader sees them',
    async (t) => {
      const { open } = await target.fresh()
      const here = await open()
      t.teardown(() => here.close())
      const there = await open()
      t.teardown(() => there.close())
      await here.append('pre', [ev('Pre')])
      const s = collect(here)
      t.teardown(() => s.sub.stop())
      const o = collect(there)
      t.teardown(() => o.sub.stop())
      await s.caughtUp
      await o.caughtUp
      // what a subscription is given from the append must equal what a read returns, JSON rules included
      const data = { z: 1, a: [{ y: 2, x: 1 }], at: new Date(0), gone: undefined, text: 'é"\n' }
      const rounds = 40
      await Promise.all(
        [here, there].map(async (store, w) => {
          for (let i = 0; i < rounds; i++) {
            await store.append(
              `mixed-${w}-${i % 3}`,
              i % 4 === 0 ? [ev('Two', data), ev('Two', { i })] : [ev('One', { w, i })],
            )
            if (i % 8 === 0) await new Promise((r) => setTimeout(r, 1))
          }
        }),
      )
      const all = await here.readAll()
      await s.waitFor(all.length)
      await o.waitFor(all.length)
      await new Promise((r) => setTimeout(r, 50))
      t.equal(s.events.length, all.length, 'every event once')
      t.same(s.events, all, 'the same events, times and data as a read returns, in the same order')
      t.same(o.events, all, 'and the same through the other handle')
    },
  )

  t.test('a stopped subscription delivers nothing more', async (t) => {
    const store = await opened(t, target)
    const s = collect(store)
    await s.caughtUp
    await s.sub.stop()
    await store.append('after-stop', [ev('X')])
    await new Promise((r) => setTimeout(r, 100))
    t.equal(s.events.length, 0)
  })

  t.test('an error thrown by the handler stops the subscription and is reported', async (t) => {
    const store = await opened(t, target)
    await store.append('boom', [ev('X'), ev('X')])
    let reported: Error | undefined
    let calls = 0
    const sub = store.subscribe({
      onEvent: () => {
        calls++
        throw new Error('handler failed')
      },
      onError: (err) => (reported = err),
    })
    await sub.closed
    t.equal(calls, 1)
    t.match(reported, { message: 'handler failed' })
  })

  t.test('the store remembers the environment that created it and refuses another (R8)', async (t) => {
    const { open } = await target.fresh()
    const store = await open('development')
    await store.append('env', [ev('X')])
    t.equal(store.environment, 'development')
    await store.close()
    const err = await open('production').then(
      async (s) => (await s.close(), undefined),
      (e: unknown) => e,
    )
    t.ok(isKennelError(err, 'KENNEL_ERR_ENVIRONMENT_MISMATCH'), 'production refuses a development store')
    t.match((err as Error).message, /development/)
    const again = await open('development')
    t.equal((await again.readAll()).length, 1, 'the refused open changed nothing')
    await again.close()
  })

  t.test('every acknowledged append survives kill -9 of the appending process, none torn', async (t) => {
    const { url, open } = await target.fresh()
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'append-child.ts'), url], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const acked: string[] = []
    const lines = readline.createInterface({ input: child.stdout! })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('child acknowledged too few appends')), 30_000)
      lines.on('line', (line) => {
        acked.push(line)
        if (acked.length >= 300) {
          clearTimeout(timer)
          child.kill('SIGKILL')
          resolve()
        }
      })
      child.on('exit', () => {
        clearTimeout(timer)
        resolve()
      })
    })
    await new Promise((r) =>
      child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r),
    )
    t.equal(child.signalCode, 'SIGKILL', 'killed mid-loop')
    const store = await open()
    t.teardown(() => store.close())
    const stored = await store.readAll()
    const byId = new Map(stored.map((e) => [e.id, e]))
    const missing = acked.filter((id) => !byId.has(id))
    t.same(missing, [], `all ${acked.length} acknowledged appends are present`)
    const streams = new Map<string, RecordedEvent[]>()
    for (const e of stored) streams.set(e.stream, [...(streams.get(e.stream) ?? []), e])
    for (const [name, events] of streams) {
      t.same(
        events.map((e) => e.revision),
        events.map((_, i) => i),
        `${name} has no hole`,
      )
      t.ok(events.length % 2 === 0, `${name}: every two-event append is whole`)
    }
  })
}
