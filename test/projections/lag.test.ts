import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t from 'tap'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { openPostgresReadModels } from '../../projections/readmodels/postgres.ts'
import { loadConfig } from '../../infra/config.ts'
import { projectorLag } from '../../projections/lag.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import { persistentProjectionNames, persistentProjections } from '../../bin/read-models.ts'
import { appendAll, deviceActivity, sandbox, testKeys, traffic } from './helpers.ts'

// The projector's lag as another process sees it: the store's head against the checkpoints in
// the read-model store, read through a connection of its own.

t.test('another connection reads the lag from the stored checkpoints: behind while stopped, none once caught up', async (t) => {
  const { store, readModels, readModelFile } = await sandbox(t)
  const observer = openSqliteReadModels(readModelFile)
  t.teardown(() => observer.close())
  const names = [deviceActivity.name, 'never-run']
  const runner = await startProjectionRunner({ store, readModels, projections: [deviceActivity] })
  await appendAll(store, traffic(50))
  await runner.waitFor(await store.headPosition())
  await runner.stop()
  await appendAll(store, traffic(30, 2))

  const lag = await projectorLag(store, observer, names)
  t.equal(lag.head, 80)
  t.same(lag.projections, [
    { name: deviceActivity.name, position: 50, behind: 30 },
    { name: 'never-run', position: 0, behind: 80 },
  ])
  t.equal(lag.behind, 80, 'a projection with no checkpoint is behind by the whole store')

  const again = await startProjectionRunner({ store, readModels, projections: [deviceActivity] })
  await again.waitFor(80)
  await again.stop()
  t.same((await projectorLag(store, observer, [deviceActivity.name])).behind, 0)
})

const PG = process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
async function pgUnreachable(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG, connectionTimeoutMillis: 2000 })
  try {
    await c.connect()
    await c.end()
    return undefined
  } catch (err) {
    return `PostgreSQL unreachable at ${PG.replace(/\/\/[^@]*@/, '//***@')}: ${(err as Error).message}`
  }
}
const pgSkip = await pgUnreachable()

t.test('PostgreSQL read models report their checkpoints the same way', { skip: pgSkip }, async (t) => {
  const schema = `klag_${randomBytes(6).toString('hex')}`
  const u = new URL(PG)
  u.searchParams.set('schema', schema)
  const store = await openEventStore(u.toString(), { environment: 'test' })
  const readModels = await openPostgresReadModels(u.toString())
  t.teardown(async () => {
    await readModels.close()
    await store.close()
    const sql = new pg.Client({ connectionString: PG })
    await sql.connect()
    await sql.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await sql.end()
  })
  const runner = await startProjectionRunner({ store, readModels, projections: [deviceActivity] })
  await appendAll(store, traffic(40))
  await runner.waitFor(await store.headPosition())
  await runner.stop()
  await appendAll(store, traffic(5, 3))
  t.same(await readModels.checkpoints(), new Map([[deviceActivity.name, 40]]))
  t.same(await projectorLag(store, readModels, [deviceActivity.name]), { head: 45, projections: [{ name: deviceActivity.name, position: 40, behind: 5 }], behind: 5 })
})

t.test('the names known without a signing key are those of the persistent projections', async (t) => {
  const config = loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: t.testdirName })
  t.same(persistentProjectionNames(), persistentProjections(config, testKeys().signer).map((p) => p.name))
})
