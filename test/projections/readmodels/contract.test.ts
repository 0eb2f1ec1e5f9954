import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { openPostgresReadModels } from '../../../projections/readmodels/postgres.ts'
import { openSqliteReadModels } from '../../../projections/readmodels/sqlite.ts'
import type { EntryLookups, ReadModelStore } from '../../../projections/readmodels/port.ts'
import { readModelContract } from './contract.ts'

// The read-model contract against the embedded store (a file per test) and PostgreSQL (a schema
// per test, on KENNEL_TEST_PG_URL, by default the local server; skipped with the reason when it is
// unreachable).

type Store = ReadModelStore & EntryLookups

/** each store opened by a test, closed when it ends unless the test closed it */
function opener(t: Test, open: () => Promise<Store>): { open(): Promise<Store> } {
  return {
    async open() {
      const store = await open()
      const close = store.close.bind(store)
      let closed: Promise<void> | undefined
      store.close = () => (closed ??= close())
      t.teardown(() => store.close())
      return store
    },
  }
}

t.test('contract: embedded SQLite', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-readmodels-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  let n = 0
  readModelContract(t, {
    async fresh(t) {
      const file = path.join(dir, `readmodels-${n++}.sqlite`)
      return opener(t, async () => openSqliteReadModels(file))
    },
  })
})

const PG = process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

async function pgSkip(): Promise<string | false> {
  const c = new pg.Client({ connectionString: PG, connectionTimeoutMillis: 2000 })
  try {
    await c.connect()
    await c.end()
    return false
  } catch (err) {
    return `PostgreSQL unreachable at ${PG.replace(/\/\/[^@]*@/, '//***@')}: ${(err as Error).message}`
  }
}

t.test('contract: PostgreSQL', { skip: await pgSkip() }, async (t) => {
  const admin = new pg.Client({ connectionString: PG })
  await admin.connect()
  t.teardown(() => admin.end())
  readModelContract(t, {
    async fresh(t) {
      const schema = `krm_${randomBytes(6).toString('hex')}`
      // registered first, so it runs after the stores' own teardowns have closed them
      t.teardown(() => admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
      return opener(t, () => openPostgresReadModels(PG!, { schema }))
    },
  })
})
