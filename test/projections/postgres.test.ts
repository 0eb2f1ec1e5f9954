import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t, { type Test } from 'tap'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { createAuditProjection } from '../../projections/audit/projection.ts'
import { verifyAuditLog } from '../../projections/audit/verify.ts'
import { openPostgresReadModels } from '../../projections/readmodels/postgres.ts'
import { rebuildProjections } from '../../projections/rebuild.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import { AuditCatchUpThreads, MIN_CATCH_UP } from '../../projections/audit/catch-up-threads.ts'
import { appendAll, deviceActivity, dumpReadModels, sandbox, testKeys, traffic } from './helpers.ts'

// Read models in PostgreSQL, in the same schema as the events; tamper tests made directly in the
// events table of a throw-away schema with its immutability trigger dropped.

const PG = process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

async function reachable(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG, connectionTimeoutMillis: 2000 })
  try {
    await c.connect()
    await c.end()
    return undefined
  } catch (err) {
    return `PostgreSQL unreachable at ${PG.replace(/\/\/[^@]*@/, '//***@')}: ${(err as Error).message}`
  }
}

const skip = await reachable()

async function freshSchema(t: Test): Promise<{ url: string; schema: string; sql: pg.Client }> {
  const schema = `kproj_${randomBytes(6).toString('hex')}`
  const sql = new pg.Client({ connectionString: PG })
  await sql.connect()
  t.teardown(async () => {
    await sql.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await sql.end()
  })
  const u = new URL(PG)
  u.searchParams.set('schema', schema)
  return { url: u.toString(), schema, sql }
}

t.test(
  'PostgreSQL read models: rebuild equals incremental, and verify names tampered positions',
  { skip },
  async (t) => {
    const { url, schema, sql } = await freshSchema(t)
    const store = await openEventStore(url, { environment: 'test' })
    t.teardown(() => store.close())
    const readModels = await openPostgresReadModels(url)
    t.teardown(() => readModels.close())
    const { signer, verifier } = testKeys()
    const projections = [
      deviceActivity,
      createAuditProjection({ signer, headEveryEvents: 30, headEverySeconds: 86400 }),
    ]
    const runner = await startProjectionRunner({ store, readModels, projections, batchSize: 40 })
    await runner.caughtUp
    await appendAll(store, traffic(200))
    await runner.waitFor(await store.headPosition())
    await runner.stop()
    const settle = await startProjectionRunner({ store, readModels, projections })
    await settle.caughtUp
    await settle.stop()
    const tables = await sql.query(
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('events', 'projection_entries')`,
      [schema],
    )
    t.equal(tables.rows[0].n, 2, 'read models live in the events schema')

    const other = await openPostgresReadModels(url, { schema: `${schema}_rb` })
    t.teardown(async () => {
      await other.close()
      await sql.query(`DROP SCHEMA IF EXISTS ${schema}_rb CASCADE`)
    })
    await rebuildProjections({ store, readModels: other, projections })
    const names = projections.map((p) => p.name)
    t.same(await dumpReadModels(other, names), await dumpReadModels(readModels, names), 'rebuilt == incremental')

    t.ok((await verifyAuditLog({ store, readModels, verifiers: [verifier] })).ok, 'untouched: consistent')
    await sql.query(`ALTER TABLE ${schema}.events DISABLE TRIGGER events_are_immutable`)
    const positions = (await sql.query(`SELECT position FROM ${schema}.events ORDER BY position`)).rows.map((r) =>
      Number(r.position),
    )
    // each alteration lies before the previous ones, so it is the first break
    const cases: Array<[string, number, string]> = [
      ['edit metadata', positions[120]!, `UPDATE ${schema}.events SET metadata = '{}'::json WHERE position = $1`],
      ['delete', positions[88]!, `DELETE FROM ${schema}.events WHERE position = $1`],
      [
        'edit',
        positions[57]!,
        `UPDATE ${schema}.events SET data = '{"deviceId":"toy-0","i":-1}'::json WHERE position = $1`,
      ],
    ]
    for (const [name, position, statement] of cases) {
      await sql.query(statement, [position])
      const result = await verifyAuditLog({ store, readModels, verifiers: [verifier] })
      t.notOk(result.ok, `${name} detected`)
      t.equal(
        result.firstBreak?.position,
        position,
        `${name}: first break at ${position} (${result.firstBreak?.message})`,
      )
    }
  },
)

t.test(
  "an embedded store rebuilt into PostgreSQL read models: the catch-up threads' columns land as rows",
  { skip },
  async (t) => {
    const { url } = await freshSchema(t)
    const sb = await sandbox(t)
    await appendAll(sb.store, traffic(MIN_CATCH_UP + 500))
    const { signer } = testKeys()
    const projections = [
      deviceActivity,
      createAuditProjection({ signer, headEveryEvents: 1000, headEverySeconds: 86400 }),
    ]
    const readModels = await openPostgresReadModels(url)
    t.teardown(() => readModels.close())
    const chunks = AuditCatchUpThreads.chunksProvided
    await rebuildProjections({ store: sb.store, readModels, projections })
    t.ok(AuditCatchUpThreads.chunksProvided > chunks, 'the rebuild went through the catch-up threads')
    await rebuildProjections({ store: sb.store, readModels: sb.readModels, projections })
    const names = projections.map((p) => p.name)
    t.same(
      await dumpReadModels(readModels, names),
      await dumpReadModels(sb.readModels, names),
      'the same documents and entries as the embedded read models',
    )
    for (const key of ['device:toy-3', 'credential:cert:aa7', 'telemetry/device:toy-3'])
      t.same(await readModels.lookup('audit', key), await sb.readModels.lookup('audit', key), key)
  },
)

t.test(
  'a read-model connection the database drops does not end the process; the next query reconnects',
  { skip },
  async (t) => {
    const { url, schema, sql } = await freshSchema(t)
    // the pool's connections carry the schema's name, so only they are dropped
    const named = new URL(url)
    named.searchParams.set('application_name', schema)
    const readModels = await openPostgresReadModels(named.toString())
    t.teardown(() => readModels.close())
    await readModels.reset('device-activity')
    t.equal(await readModels.load('device-activity'), undefined)
    const dropped = await sql.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
      [schema],
    )
    t.ok(dropped.rowCount! > 0, 'the idle connections were dropped by the server')
    await new Promise((r) => setTimeout(r, 300))
    t.equal(await readModels.load('device-activity'), undefined, 'the next query runs on a new connection')
  },
)

t.test(
  'a read-model connection dropped in the middle of a transaction: the process goes on, the runner recovers, and the read models equal a rebuild',
  { skip },
  async (t) => {
    const { url, schema, sql } = await freshSchema(t)
    const store = await openEventStore(url, { environment: 'test' })
    t.teardown(() => store.close())
    const readModels = await openPostgresReadModels(url)
    t.teardown(() => readModels.close())
    const { signer } = testKeys()
    const projections = [
      deviceActivity,
      createAuditProjection({ signer, headEveryEvents: 30, headEverySeconds: 86400 }),
    ]
    const runner = await startProjectionRunner({ store, readModels, projections, batchSize: 40 })
    t.teardown(() => runner.stop())
    await runner.caughtUp
    await appendAll(store, traffic(100))
    await runner.waitFor(await store.headPosition())

    // the runner's next transaction waits on a lock held here, so it is open when its connection is dropped
    const locker = new pg.Client({ connectionString: PG })
    await locker.connect()
    t.teardown(() => locker.end().catch(() => undefined))
    await locker.query('BEGIN')
    await locker.query(`LOCK TABLE ${schema}.projection_checkpoints IN EXCLUSIVE MODE`)
    await appendAll(store, traffic(100, 2))
    // the read-model store names its connections after the schema, so only they are dropped
    const appName = `kennel-readmodels:${schema}`
    const deadline = Date.now() + 20_000
    while (
      (
        await sql.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' AND state = 'active'`,
          [appName],
        )
      ).rowCount === 0
    ) {
      if (Date.now() > deadline) throw new Error('the runner never waited on the lock')
      await new Promise((r) => setTimeout(r, 20))
    }
    const dropped = await sql.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
      [appName],
    )
    t.ok(dropped.rowCount! > 0, `the read-model connections were dropped mid-transaction (${dropped.rowCount})`)
    await locker.query('COMMIT')

    await appendAll(store, traffic(100, 3))
    await runner.waitFor(await store.headPosition(), 30_000)
    t.pass('the runner reloaded and caught up')

    const other = await openPostgresReadModels(url, { schema: `${schema}_rb` })
    t.teardown(async () => {
      await other.close()
      await sql.query(`DROP SCHEMA IF EXISTS ${schema}_rb CASCADE`)
    })
    await runner.stop()
    // the tree heads the last batch raised were appended after it: a second runner applies them
    const settle = await startProjectionRunner({ store, readModels, projections })
    await settle.caughtUp
    await settle.stop()
    await rebuildProjections({ store, readModels: other, projections })
    const names = projections.map((p) => p.name)
    t.same(
      await dumpReadModels(readModels, names),
      await dumpReadModels(other, names),
      'the read models equal a rebuild from the events',
    )
  },
)
