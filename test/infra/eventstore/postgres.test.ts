import { randomBytes, randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import pg from 'pg'
import { isKennelError } from '../../../infra/errors.ts'
import { openEventStore } from '../../../infra/eventstore/open.ts'
import type { RecordedEvent } from '../../../infra/eventstore/port.ts'
import { eventStoreContract } from './contract.ts'

const base = process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const admin = new pg.Client({ connectionString: base, connectionTimeoutMillis: 3000 })
const reachable = await admin.connect().then(
  () => true,
  (err: Error) => (
    t.plan(0, `PostgreSQL unreachable at ${base.replace(/\/\/[^@]*@/, '//***@')}: ${err.message}`), false
  ),
)

/** a fresh schema, dropped when the test ends */
function freshSchema(t: Test): { schema: string; url: string } {
  const schema = `kennel_test_${randomBytes(6).toString('hex')}`
  const url = new URL(base)
  url.searchParams.set('schema', schema)
  t.teardown(() => admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
  return { schema, url: url.toString() }
}

if (reachable) {
  t.teardown(() => admin.end())

  t.test('contract: PostgreSQL', async (t) => {
    eventStoreContract(t, {
      async fresh() {
        const { url } = freshSchema(t)
        return { url, open: (environment = 'test') => openEventStore(url, { environment }) }
      },
    })
  })

  t.test('the events table refuses UPDATE, DELETE and TRUNCATE', async (t) => {
    const { schema, url } = freshSchema(t)
    const store = await openEventStore(url, { environment: 'test' })
    await store.append('s', [{ type: 'X', data: { v: 1 } }])
    await store.close()
    await t.rejects(admin.query(`UPDATE "${schema}".events SET data = '{"v":2}'`), /immutable/)
    await t.rejects(admin.query(`DELETE FROM "${schema}".events`), /append-only/)
    await t.rejects(admin.query(`TRUNCATE "${schema}".events`), /append-only/)
    const { rows } = await admin.query(`SELECT data FROM "${schema}".events`)
    t.same(
      rows.map((r) => r.data),
      [{ v: 1 }],
      'the event is unchanged',
    )
  })

  t.test('two processes creating the same schema at once both open it', async (t) => {
    const { url } = freshSchema(t)
    const stores = await Promise.all([
      openEventStore(url, { environment: 'test' }),
      openEventStore(url, { environment: 'test' }),
    ])
    t.teardown(() => Promise.all(stores.map((s) => s.close())))
    await stores[0]!.append('s', [{ type: 'X', data: {} }])
    t.equal((await stores[1]!.readAll()).length, 1)
  })

  t.test(
    'a store made with the first append functions has them replaced on open, and its subscriptions are given appended events as a read returns them',
    async (t) => {
      const { schema, url } = freshSchema(t)
      const first = await openEventStore(url, { environment: 'test' })
      await first.append('s', [{ type: 'X', data: { v: 1 } }])
      await first.close()
      // version 1 returned [revision, position] only and stored clock_timestamp() per row
      await admin.query(`DELETE FROM "${schema}".kennel_meta WHERE key = 'functions'`)
      await admin.query(
        `CREATE OR REPLACE FUNCTION "${schema}".append_batch(p_streams text[], p_expected text[], p_counts integer[], p_ids uuid[], p_types text[], p_data json[], p_metadata json[]) RETURNS json LANGUAGE sql AS $$ SELECT '[]'::json $$`,
      )
      const store = await openEventStore(url, { environment: 'test' })
      t.teardown(() => store.close())
      const { rows } = await admin.query(`SELECT value FROM "${schema}".kennel_meta WHERE key = 'functions'`)
      t.same(rows, [{ value: '2' }], 'the functions are recorded as version 2')
      const seen: RecordedEvent[] = []
      let caughtUp!: () => void
      const ready = new Promise<void>((r) => (caughtUp = r))
      const sub = store.subscribe({ onEvent: (e) => void seen.push(e), onCaughtUp: () => caughtUp() })
      t.teardown(() => sub.stop())
      await ready
      await store.append('s', [
        { type: 'X', data: { v: 2 } },
        { type: 'X', data: { v: 3 } },
      ])
      while (seen.length < 3) await new Promise((r) => setTimeout(r, 5))
      t.same(seen, await store.readAll(), 'the appended events, with the stored time')
    },
  )

  t.test('a schema name that is not a plain identifier is refused', async (t) => {
    const url = new URL(base)
    url.searchParams.set('schema', 'x"; DROP TABLE y; --')
    const err = await openEventStore(url.toString(), { environment: 'test' }).catch((e: unknown) => e)
    t.ok(isKennelError(err, 'KENNEL_ERR_EVENTSTORE_URL'))
  })

  t.test('no event is skipped when the transaction that appended first commits last (commit-order gap)', async (t) => {
    const { schema, url } = freshSchema(t)
    const store = await openEventStore(url, { environment: 'test' })
    t.teardown(() => store.close())
    const seen: RecordedEvent[] = []
    let caughtUp!: () => void
    const ready = new Promise<void>((r) => (caughtUp = r))
    const sub = store.subscribe({ onEvent: (e) => void seen.push(e), onCaughtUp: () => caughtUp() })
    t.teardown(() => sub.stop())
    await ready

    // another writer appends through the same function but has not committed yet
    const slow = new pg.Client({ connectionString: base })
    await slow.connect()
    t.teardown(() => slow.end())
    const slowId = randomUUID()
    await slow.query('BEGIN')
    await slow.query(`SELECT * FROM "${schema}".append_events('slow', 'any', $1, $2, $3, $4)`, [
      [slowId],
      ['Slow'],
      ['{}'],
      ['{}'],
    ])

    // meanwhile this process appends; give a naive store every chance to commit and deliver it
    const fast = store.append('fast', [{ type: 'Fast', data: {} }])
    await new Promise((r) => setTimeout(r, 300))
    await slow.query('COMMIT')
    await fast

    const deadline = Date.now() + 5000
    while (seen.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, 100))
    t.same(
      seen.map((e) => e.type),
      ['Slow', 'Fast'],
      'both delivered, exactly once, the first committed first',
    )
    t.ok(
      seen.every((e, i) => i === 0 || e.position > seen[i - 1]!.position),
      'in position order',
    )
    t.same(
      seen.map((e) => e.id),
      (await store.readAll()).map((e) => e.id),
      'the same sequence a reader sees',
    )
  })

  t.test('an append committed by another process reaches a subscription', async (t) => {
    const { url } = freshSchema(t)
    const server = await openEventStore(url, { environment: 'test' })
    t.teardown(() => server.close())
    const cli = await openEventStore(url, { environment: 'test' })
    t.teardown(() => cli.close())
    const seen: string[] = []
    const sub = server.subscribe({ onEvent: (e) => void seen.push(e.id) })
    t.teardown(() => sub.stop())
    const id = randomUUID()
    await cli.append('cli', [{ id, type: 'FromCli', data: {} }])
    const deadline = Date.now() + 5000
    while (!seen.includes(id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
    t.same(seen, [id])
  })
  t.test(
    'a subscription outlives a database that fails its reads: they are retried from the same position',
    async (t) => {
      const { schema, url } = freshSchema(t)
      const store = await openEventStore(url, { environment: 'test' })
      t.teardown(() => store.close())
      await store.append('s', [{ type: 'X', data: { i: 1 } }])
      const got: number[] = []
      const retries: number[] = []
      let stopped: Error | undefined
      let caughtUp!: () => void
      const ready = new Promise<void>((r) => (caughtUp = r))
      const sub = store.subscribe({
        onEvent: (e) => void got.push((e.data as { i: number }).i),
        onCaughtUp: () => caughtUp(),
        onRetry: (_err, delayMs) => void retries.push(delayMs),
        onError: (err) => (stopped = err),
      })
      t.teardown(() => sub.stop())
      await ready
      // the table is away: every read fails, as while the database restarts
      await admin.query(`ALTER TABLE "${schema}".events RENAME TO events_away`)
      const deadline = Date.now() + 10_000
      while (retries.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      t.ok(retries.length >= 3, `failed reads are retried (${retries.length} retries)`)
      t.ok(
        retries.every((d, i) => i === 0 || d >= retries[i - 1]!),
        `with backoff (${retries.join(', ')} ms)`,
      )
      await admin.query(`ALTER TABLE "${schema}".events_away RENAME TO events`)
      const { position } = await store.append('s', [{ type: 'X', data: { i: 2 } }])
      while (!got.includes(2) && Date.now() < deadline + 10_000) await new Promise((r) => setTimeout(r, 20))
      t.same(got, [1, 2], 'the event appended after the outage is delivered, and none twice')
      t.equal(stopped, undefined, 'the subscription did not stop')
      t.ok(position > 1)
    },
  )
}

if (reachable) {
  /** wait for a condition, polling; fails the test with `what` after a generous deadline */
  async function until(what: string, check: () => Promise<boolean> | boolean, deadlineMs = 20_000): Promise<void> {
    const deadline = Date.now() + deadlineMs
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  t.test(
    'a connection the server drops fails only the appends using it, with a coded retryable error; a retry with the same ids lands exactly once',
    async (t) => {
      const { schema, url } = freshSchema(t)
      const store = await openEventStore(url, { environment: 'test' })
      t.teardown(() => store.close())
      const delivered: string[] = []
      const sub = store.subscribe({ onEvent: (e) => void delivered.push(e.id) })
      t.teardown(() => sub.stop())
      // the store names its connections after the schema, so only they are dropped
      const appName = `kennel:${schema}`
      const waitingOnLock = async (): Promise<boolean> =>
        (
          await admin.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [
            appName,
          ])
        ).rowCount! > 0

      const resolved: string[] = []
      const refusals: unknown[] = []
      let stop = false
      // four appenders, each retrying a refused append with the same event id
      const appenders = Array.from({ length: 4 }, async (_, n) => {
        for (let i = 0; !stop; i++) {
          const id = randomUUID()
          for (;;) {
            try {
              await store.append(`s-${n}`, [{ id, type: 'X', data: { n, i } }])
              resolved.push(id)
              break
            } catch (err) {
              refusals.push(err)
            }
          }
        }
      })
      for (let round = 0; round < 3; round++) {
        // appends are held at the events table while the connections are dropped, so some are surely in flight
        const locker = new pg.Client({ connectionString: base })
        await locker.connect()
        t.teardown(() => locker.end().catch(() => undefined))
        await locker.query('BEGIN')
        await locker.query(`LOCK TABLE "${schema}".events IN EXCLUSIVE MODE`)
        await until('an append waiting on the lock', waitingOnLock)
        const refusedBefore = refusals.length
        const dropped = await admin.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
          [appName],
        )
        t.ok(dropped.rowCount! > 0, `round ${round}: the store's connections were dropped (${dropped.rowCount})`)
        await until('the appends in flight to be refused', () => refusals.length > refusedBefore)
        t.ok(
          refusals.slice(refusedBefore).every((e) => isKennelError(e, 'KENNEL_ERR_UNAVAILABLE')),
          `round ${round}: refused with KENNEL_ERR_UNAVAILABLE (HTTP 503)`,
        )
        await locker.query('COMMIT')
        const resolvedBefore = resolved.length
        await until('appends to succeed again', () => resolved.length >= resolvedBefore + 20)
      }
      stop = true
      await Promise.all(appenders)

      t.ok(refusals.length > 0, `${refusals.length} appends were refused`)
      t.match(
        (refusals[0] as Error).message,
        /connection lost while appending.*a retry with the same event ids is safe/,
      )
      const stored = (await store.readAll()).map((e) => e.id)
      t.equal(new Set(stored).size, stored.length, 'no event is stored twice')
      t.same(
        [...stored].sort(),
        [...resolved].sort(),
        'every append that resolved is stored, exactly once, and nothing else',
      )
      await until('the subscription to deliver every event', () => delivered.length >= stored.length)
      t.same(delivered, stored, 'the subscription went on through the drops, in order, none twice')
    },
  )
}
