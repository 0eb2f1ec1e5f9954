import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import pg from 'pg'
import { accountContacts } from '../../bin/breach-contacts.ts'
import { eraseAccountByOps, exportAccountByOps } from '../../bin/commands/account.ts'
import { bearer, buildTestApi, STRONG, type TestApi } from './helpers.ts'

// Two API nodes of a cluster (issue 15): each with its own data dir, one PostgreSQL schema for
// events and keys, one master key. What one node seals, the other opens; what one node erases,
// the other shows as [erased]. Before the key store, person keys were files in the data dir of
// the node that made them.

const base = process.env.KENNEL_TEST_PG_URL
const admin = base === undefined ? undefined : new pg.Client({ connectionString: base, connectionTimeoutMillis: 3000 })
const reachable =
  admin === undefined
    ? (t.plan(0, 'KENNEL_TEST_PG_URL is not set: two nodes need a shared PostgreSQL'), false)
    : await admin.connect().then(
        () => true,
        (err: Error) => (
          t.plan(0, `PostgreSQL unreachable at ${base!.replace(/\/\/[^@]*@/, '//***@')}: ${err.message}`), false
        ),
      )

const EMAIL = 'alice.dubois@example.org'
const HOUSEHOLD = 'The Dubois-Ångström family'

async function twoNodes(t: Test): Promise<{ a: TestApi; b: TestApi }> {
  const schema = `kennel_test_${randomBytes(6).toString('hex')}`
  const url = new URL(base!)
  url.searchParams.set('schema', schema)
  t.teardown(() => admin!.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
  const env = { KENNEL_EVENTSTORE: url.toString(), KENNEL_MASTER_KEY: randomBytes(32).toString('base64') }
  return { a: await buildTestApi(t, { env }), b: await buildTestApi(t, { env }) }
}

const personKeyFiles = (node: TestApi): string[] => {
  const dir = path.join(node.pki.config.dataDir, 'keys', 'persons')
  return fs.existsSync(dir) ? fs.readdirSync(dir) : []
}

if (reachable && admin) {
  t.teardown(() => admin.end())

  t.test('an account made on one node is opened on the other and erased on both', async (t) => {
    const { a, b } = await twoNodes(t)
    t.not(a.pki.config.dataDir, b.pki.config.dataDir)
    const alice = await a.parent(EMAIL)
    const named = await a.app.inject({
      method: 'POST',
      url: '/v1/households',
      headers: bearer(alice.token),
      payload: { name: HOUSEHOLD },
    })
    t.equal(named.statusCode, 201)

    // node B follows the shared store a few milliseconds behind node A
    await b.app.readModels.waitFor(await a.pki.store.headPosition())
    const session = await b.app.inject({
      method: 'POST',
      url: '/v1/sessions',
      payload: { email: EMAIL, password: STRONG },
    })
    t.equal(session.statusCode, 200, `she logs in on the other node: ${session.body}`)
    const onB = session.json().token as string
    const exported = await b.app.inject({
      method: 'POST',
      url: '/v1/accounts/me/export',
      headers: bearer(onB),
      payload: { password: STRONG },
    })
    t.equal(exported.statusCode, 200)
    const doc = exported.json()
    t.equal(doc.account.email, EMAIL, 'her address, sealed on node A, opens on node B')
    t.ok(
      doc.households.some((h: { name: string }) => h.name === HOUSEHOLD),
      'and the name she gave her household',
    )
    t.notOk(JSON.stringify(doc).includes('[erased]'), 'nothing reads as erased')
    t.same(
      (await accountContacts({ config: b.pki.config, store: b.pki.store })([alice.accountId])).get(alice.accountId),
      EMAIL,
      "node B's breach-report contacts name her",
    )
    t.same([...personKeyFiles(a), ...personKeyFiles(b)], [], 'no node keeps person keys in its data dir')

    const erased = await a.app.inject({
      method: 'DELETE',
      url: '/v1/accounts/me',
      headers: bearer(alice.token),
      payload: { password: STRONG },
    })
    t.equal(erased.statusCode, 200, 'she erases herself on node A')
    t.same(
      (await accountContacts({ config: b.pki.config, store: b.pki.store })([alice.accountId])).get(alice.accountId),
      '[erased]',
      'node B: erased',
    )
    t.same(
      (await accountContacts({ config: a.pki.config, store: a.pki.store })([alice.accountId])).get(alice.accountId),
      '[erased]',
      'node A: erased',
    )
    const signUpAgain = await b.app.inject({
      method: 'POST',
      url: '/v1/accounts',
      payload: { email: EMAIL, password: STRONG },
    })
    t.equal(signUpAgain.statusCode, 202, 'the address may sign up again on node B, as a new account with a new key')
    t.equal(
      (
        await b.app.inject({
          method: 'POST',
          url: '/v1/accounts/me/export',
          headers: bearer(onB),
          payload: { password: STRONG },
        })
      ).statusCode,
      401,
      'her session on node B ended with the erasure',
    )
  })

  t.test("ops on one machine export and erase an account made through another node's API", async (t) => {
    const { a, b } = await twoNodes(t)
    const bob = await a.parent('bob@example.org')
    const ops = { config: b.pki.config, store: b.pki.store, actor: 'cli:test' }
    const exported = await exportAccountByOps(ops, 'bob@example.org')
    t.equal(
      (exported.account as { email: string }).email,
      'bob@example.org',
      '`kennel account export` opens his address',
    )
    await eraseAccountByOps(ops, 'bob@example.org', 'ticket 42')
    t.same(
      (await accountContacts({ config: a.pki.config, store: a.pki.store })([bob.accountId])).get(bob.accountId),
      '[erased]',
      "node A's breach-report contacts: erased",
    )
    t.same(personKeyFiles(b), [], 'the erasure left nothing in the data dir either')
  })
}
