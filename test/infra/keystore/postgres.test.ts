import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import pg from 'pg'
import { KeyRing } from '../../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../../infra/keystore/files.ts'
import { openKeyStore } from '../../../infra/keystore/open.ts'
import { openPostgresKeyStore, POSTGRES_KEY_RECHECK_MS } from '../../../infra/keystore/postgres.ts'
import { keyStoreContract } from './contract.ts'
import { HouseholdSources, type SealedSource } from '../../../infra/keystore/sealed-source.ts'

const base = process.env.KENNEL_TEST_PG_URL
const admin = base === undefined ? undefined : new pg.Client({ connectionString: base, connectionTimeoutMillis: 3000 })
const reachable =
  admin === undefined
    ? (t.plan(0, 'KENNEL_TEST_PG_URL is not set: the PostgreSQL key store is not tested'), false)
    : await admin.connect().then(
        () => true,
        (err: Error) => (
          t.plan(0, `PostgreSQL unreachable at ${base!.replace(/\/\/[^@]*@/, '//***@')}: ${err.message}`), false
        ),
      )

/** a fresh schema, dropped when the test ends */
function freshSchema(t: Test): { schema: string; url: string } {
  const schema = `kennel_test_${randomBytes(6).toString('hex')}`
  const url = new URL(base!)
  url.searchParams.set('schema', schema)
  t.teardown(() => admin!.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
  return { schema, url: url.toString() }
}

if (reachable && admin) {
  t.teardown(() => admin.end())

  t.test('contract: PostgreSQL', async (t) => {
    keyStoreContract(t, {
      async fresh(t) {
        const { url } = freshSchema(t)
        return { open: () => openPostgresKeyStore(url) }
      },
    })
  })

  t.test('nodes starting at once on a fresh schema all open it', async (t) => {
    const { url } = freshSchema(t)
    const stores = await Promise.all([1, 2, 3, 4].map(() => openPostgresKeyStore(url)))
    t.teardown(() => Promise.all(stores.map((s) => s.close())))
    t.equal(stores.length, 4)
  })

  t.test('the table holds wrapped keys and, after a shred, a tombstone row without one', async (t) => {
    const { schema, url } = freshSchema(t)
    const store = await openPostgresKeyStore(url)
    t.teardown(() => store.close())
    const master = randomBytes(32)
    const key = await new KeyRing(store, master, 'person').keyFor('alice')
    const before = await admin.query(
      `SELECT wrapped FROM "${schema}".kennel_keys WHERE ring = 'person' AND owner = 'alice'`,
    )
    t.equal(before.rows.length, 1)
    t.notOk((before.rows[0].wrapped as Buffer).includes(key), 'wrapped, not the key')
    await new KeyRing(store, master, 'person').shred('alice')
    const after = await admin.query(
      `SELECT wrapped, shredded_at FROM "${schema}".kennel_keys WHERE ring = 'person' AND owner = 'alice'`,
    )
    t.equal(after.rows[0].wrapped, null, 'the wrapped key is deleted')
    t.ok(after.rows[0].shredded_at instanceof Date, 'the tombstone says when')
    await t.rejects(
      admin.query(`UPDATE "${schema}".kennel_keys SET shredded_at = NULL WHERE owner = 'alice'`),
      /check/,
      'a row is either a key or a tombstone',
    )
  })

  t.test(`a node re-reads a key it holds after ${POSTGRES_KEY_RECHECK_MS} ms, not before`, async (t) => {
    const { schema, url } = freshSchema(t)
    const store = await openPostgresKeyStore(url)
    t.teardown(() => store.close())
    t.equal(store.recheckMs, POSTGRES_KEY_RECHECK_MS)
    let now = 0
    const ring = new KeyRing(store, randomBytes(32), 'person', { now: () => new Date(now) })
    await ring.keyFor('alice')
    await admin.query(`UPDATE "${schema}".kennel_keys SET wrapped = NULL, shredded_at = now()`)
    now += POSTGRES_KEY_RECHECK_MS - 1
    t.ok(await ring.existingKey('alice'), 'cached within the bound (no round trip per use)')
    now += 1
    t.equal(await ring.existingKey('alice'), undefined, 'read again at the bound')
  })

  t.test("an upgraded node's file keys move into the shared table, so nothing it sealed reads as erased", async (t) => {
    const { url } = freshSchema(t)
    const dataDir = t.testdir()
    const master = randomBytes(32)
    const files = fileKeyStore(dataDir)
    const alice = await new KeyRing(files, master, 'person').keyFor('alice')
    const household = await new KeyRing(files, master, 'household-data').keyFor('h1')
    await new KeyRing(files, master, 'person').keyFor('erased')
    await new KeyRing(files, master, 'person').shred('erased')
    await new KeyRing(files, master, 'person').keyFor('bob')
    // another node made its own key for bob before keys were shared
    const elsewhere = await openPostgresKeyStore(url)
    const bobElsewhere = await new KeyRing(elsewhere, master, 'person').keyFor('bob')
    await elsewhere.close()

    const warnings: unknown[] = []
    const store = await openKeyStore(
      { eventStoreUrl: url, dataDir },
      { info: () => {}, warn: (o: unknown) => void warnings.push(o) },
    )
    t.teardown(() => store.close())
    t.equal(store.kind, 'postgres')
    t.same(await new KeyRing(store, master, 'person').existingKey('alice'), alice, 'her key, as it was')
    t.same(await new KeyRing(store, master, 'household-data').existingKey('h1'), household)
    await t.rejects(
      new KeyRing(store, master, 'person').keyFor('erased'),
      { code: 'KENNEL_ERR_KEY_SHREDDED' },
      'an erasure made before stays one',
    )
    t.same(
      await new KeyRing(store, master, 'person').existingKey('bob'),
      bobElsewhere,
      'the shared key is not replaced',
    )
    t.equal(warnings.length, 1, 'the conflict is logged')
    t.same(
      fs.readdirSync(path.join(dataDir, 'keys', 'persons')),
      ['bob.key.superseded'],
      'the data dir keeps only the superseded key',
    )
    t.same(fs.readdirSync(path.join(dataDir, 'blobs', 'keys')), [])
  })

  t.test(
    "a paired toy's address sealed by a broker node opens on an API node sharing the schema, and reads as erased there once the household is",
    async (t) => {
      const { url } = freshSchema(t)
      const master = randomBytes(32)
      const [brokerKeys, apiKeys] = [await openPostgresKeyStore(url), await openPostgresKeyStore(url)]
      t.teardown(() => Promise.all([brokerKeys.close(), apiKeys.close()]))
      const onBroker = new HouseholdSources(new KeyRing(brokerKeys, master, 'household-data'))
      const onApi = new HouseholdSources(new KeyRing(apiKeys, master, 'household-data'))
      const sealed = (await onBroker.source('h-1', '203.0.113.9')) as SealedSource
      t.equal(
        await onApi.open('h-1', sealed.sourceIpSealed),
        '203.0.113.9',
        'the API node opens what the broker node sealed',
      )
      await onApi.shred('h-1')
      t.equal(await onApi.open('h-1', sealed.sourceIpSealed), undefined, 'erased on the node that shredded, at once')
      t.same(
        await new HouseholdSources(new KeyRing(brokerKeys, master, 'household-data')).source('h-1', '203.0.113.9'),
        {},
        'a broker that reads the key again records no address for the erased household',
      )
    },
  )
}
