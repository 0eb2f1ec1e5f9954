import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { accountContacts } from '../../bin/breach-contacts.ts'
import { eraseAccountByOps, grantRole } from '../../bin/commands/account.ts'
import { persistentProjections } from '../../bin/read-models.ts'
import { LocalBlobStore } from '../../infra/blobstore/local.ts'
import { createLogger } from '../../infra/log.ts'
import { verifyAuditLog } from '../../projections/audit/verify.ts'
import { createAuditPort } from '../../projections/catalogue.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { rebuildProjections } from '../../projections/rebuild.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import { testKeys } from '../projections/helpers.ts'
import { bearer, buildTestApi, STRONG } from './helpers.ts'

// Erasure by crypto-shredding (R12): a parent erases themselves, or ops erase them. Afterwards
// nothing kennel shows says who they were, their household goes with its recordings and toys, and
// the history (never rewritten) still rebuilds and still verifies.

const EMAIL = 'alice.dubois@example.org'
const HOUSEHOLD = 'The Dubois-Ångström family'
const hello = Buffer.from('OggS-goodnight')

async function world(t: Test) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-erasure-'))
  const readModels = openSqliteReadModels(path.join(dir, 'readmodels.sqlite'))
  t.teardown(async () => (await readModels.close(), fs.rmSync(dir, { recursive: true, force: true })))
  const lines: string[] = []
  const logger = createLogger('trace', 'kennel', { write: (line: string) => void lines.push(line) })
  const { signer, verifier } = testKeys()
  const auditDeps = { readModels, verifiers: [verifier] }
  const api = await buildTestApi(t, {
    env: { KENNEL_AUDIT_HEAD_EVERY_EVENTS: '10' },
    deps: {
      logger,
      audit: {
        verify: async () => ({}),
        latestHead: async () => null,
        breachReport: (r) =>
          createAuditPort({
            ...auditDeps,
            store: api.pki.store,
            contacts: accountContacts({ config: api.pki.config, store: api.pki.store }),
          }).breachReport(r),
      },
    },
  })
  const alice = await api.parent(EMAIL)
  const named = (
    await api.app.inject({
      method: 'POST',
      url: '/v1/households',
      headers: bearer(alice.token),
      payload: { name: HOUSEHOLD },
    })
  ).json().householdId as string
  await api.pairedToy(alice.token, named, 'toy-alice')
  const upload = (
    await api.app.inject({
      method: 'POST',
      url: `/v1/households/${named}/recordings`,
      headers: bearer(alice.token),
      payload: { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: hello.length },
    })
  ).json()
  const u = new URL(upload.url)
  await api.app.inject({ method: 'PUT', url: u.pathname + u.search, headers: upload.headers, payload: hello })
  await api.app.inject({
    method: 'POST',
    url: `/v1/recordings/${upload.recordingId}/complete`,
    headers: bearer(alice.token),
  })
  const objectKey = (
    (await api.pki.store.readStream(`recording-${upload.recordingId}`))[0]!.data as { objectKey: string }
  ).objectKey
  const bob = await api.parent('bob@example.org')
  await api.pairedToy(bob.token, bob.householdId, 'toy-bob')
  await api.signUp('audit@example.org')
  await grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'audit@example.org', 'auditor')
  const auditor = (
    await api.app.inject({
      method: 'POST',
      url: '/v1/sessions',
      payload: { email: 'audit@example.org', password: STRONG },
    })
  ).json().token as string
  const projections = persistentProjections(api.pki.config, signer)
  /** the persistent read models (audit log, monitor, devices, accounts, households, recordings) up to the head */
  const project = async () => {
    const runner = await startProjectionRunner({ store: api.pki.store, readModels, projections })
    await runner.caughtUp
    await runner.waitFor(await api.pki.store.headPosition())
    await runner.stop()
  }
  const blobs = new LocalBlobStore({ dir: path.join(api.pki.config.dataDir, 'blobs'), masterKey: Buffer.alloc(32) })
  return {
    dir,
    api,
    alice,
    bob,
    named,
    upload,
    objectKey,
    auditor,
    lines,
    readModels,
    projections,
    project,
    verifier,
    blobs,
  }
}

const erase = (w: Awaited<ReturnType<typeof world>>, password = STRONG) =>
  w.api.app.inject({ method: 'DELETE', url: '/v1/accounts/me', headers: bearer(w.alice.token), payload: { password } })

t.test(
  'a wrong password erases nothing; the right one erases the parent, their household, its recordings and toys, and ends their sessions',
  async (t) => {
    const w = await world(t)
    const { api, alice } = w
    const before = await api.pki.store.headPosition()
    const wrong = await erase(w, 'not-the-password-at-all')
    t.equal(wrong.statusCode, 401, wrong.body)
    t.equal(wrong.json().error.code, 'KENNEL_ERR_LOGIN_FAILED')
    t.same(
      (await api.pki.store.readAll({ after: before })).map((e) => e.type),
      ['LoginFailed'],
      'only the failure is recorded',
    )
    t.equal(
      (await api.app.inject({ method: 'GET', url: '/v1/households', headers: bearer(alice.token) })).statusCode,
      200,
      'the session still works',
    )
    t.equal(
      (await api.app.inject({ method: 'DELETE', url: '/v1/accounts/me', headers: bearer(alice.token) })).statusCode,
      400,
      'no password, no erasure',
    )
    t.equal(
      (await api.app.inject({ method: 'DELETE', url: '/v1/accounts/me', payload: { password: STRONG } })).statusCode,
      401,
      'no token, no erasure',
    )

    const second = (
      await api.app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: EMAIL, password: STRONG } })
    ).json().token as string
    const res = await erase(w)
    t.equal(res.statusCode, 200, res.body)
    t.match(res.json(), { accountId: alice.accountId, status: 'erased', deviceIds: ['toy-alice'], recordings: 1 })
    t.same(
      [...res.json().householdIds].sort(),
      [alice.householdId, w.named].sort(),
      'both of her households: she was their only member',
    )

    for (const token of [alice.token, second])
      t.equal(
        (await api.app.inject({ method: 'GET', url: '/v1/households', headers: bearer(token) })).statusCode,
        401,
        'every session has ended',
      )
    t.equal(
      (await api.app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: EMAIL, password: STRONG } }))
        .statusCode,
      401,
      'the address logs in no more',
    )
    const stream = await api.pki.store.readStream('device-toy-alice')
    t.same(
      stream.slice(-2).map((e) => e.type),
      ['DeviceRevoked', 'DeviceUnpaired'],
      'the toy is revoked (every certificate) and unpaired, by the existing revocation',
    )
    t.match(stream.at(-2)!.data, { deviceId: 'toy-alice', reason: 'account-erased', serials: [/^[0-9a-f]+$/] })
    t.equal(
      await w.blobs.stat(w.objectKey).catch((err: { code: string }) => err.code),
      undefined,
      'the recording is deleted from the blob store',
    )
    t.notOk(
      fs.existsSync(path.join(api.pki.config.dataDir, 'blobs', 'keys', `${w.named}.key`)),
      "the household's recording key is shredded",
    )
    t.notOk(
      fs.existsSync(path.join(api.pki.config.dataDir, 'keys', 'persons', `${alice.accountId}.key`)),
      'her person key is shredded',
    )

    const account = await api.pki.store.readStream(`account-${alice.accountId}`)
    t.same(
      account.slice(-3).map((e) => [e.type, (e.data as { reason?: string }).reason]),
      [
        ['SessionEnded', 'account-erased'],
        ['SessionEnded', 'account-erased'],
        ['AccountErased', 'holder-request'],
      ],
    )
    const erased = account.at(-1)!
    t.same(
      Object.keys(erased.data as object).sort(),
      ['accountId', 'deviceIds', 'erasedAt', 'householdIds', 'reason', 'recordingIds'],
      'who, when, why and what went: nothing personal',
    )
    t.match(erased.metadata, { actor: `account:${alice.accountId}`, credential: /^token:/ })
    t.notOk('sourceIp' in erased.metadata, 'not even where the request came from')

    // Bob's household, toy and session are untouched
    t.equal(
      (
        await api.app.inject({
          method: 'GET',
          url: `/v1/households/${w.bob.householdId}/devices`,
          headers: bearer(w.bob.token),
        })
      ).json().devices[0].status,
      'active',
    )
    // the address is free again: a new sign-up makes a new account
    const again = await api.signUp(EMAIL)
    t.not(again, alice.accountId, 'a new sign-up with the address is a new account')
  },
)

t.test(
  'after erasure no read model, API response, CLI output, breach report or log line shows the person’s data',
  async (t) => {
    const w = await world(t)
    const { api, alice } = w
    const t0 = new Date(Date.now() - 3600_000).toISOString()
    t.equal((await erase(w)).statusCode, 200)
    const personal = [EMAIL, 'alice.dubois', 'Dubois', 'Ångström']
    const shows = (what: string, text: string) =>
      t.notOk(
        personal.some((p) => text.includes(p)),
        `${what} shows none of it`,
      )

    await w.project()
    const models: string[] = []
    for (const p of w.projections) models.push(JSON.stringify((await w.readModels.load(p.name))?.docs ?? []))
    shows('the persistent read models', models.join('\n'))
    const responses: string[] = []
    for (const url of ['/v1/households', `/v1/households/${w.bob.householdId}/devices`])
      responses.push((await api.app.inject({ method: 'GET', url, headers: bearer(w.bob.token) })).body)
    responses.push((await api.app.inject({ method: 'GET', url: '/v1/households', headers: bearer(alice.token) })).body)
    responses.push(
      (await api.app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: EMAIL, password: STRONG } })).body,
    )
    shows('the API', responses.join('\n'))
    const report = await api.app.inject({
      method: 'POST',
      url: '/v1/audit/breach-reports',
      headers: bearer(w.auditor),
      payload: {
        credential: `account:${alice.accountId}`,
        since: t0,
        until: new Date(Date.now() + 3600_000).toISOString(),
      },
    })
    t.equal(report.statusCode, 201, report.body)
    shows('the breach report', report.body)
    t.same(
      report.json().notifications.map((n: { accountId: string; contact: string }) => [n.accountId, n.contact]),
      [[alice.accountId, '[erased]']],
      'her notification reads [erased]',
    )
    // what `kennel events tail` prints is the events themselves
    shows('the event history (kennel events tail)', JSON.stringify(await api.pki.store.readAll()))
    shows('the log', w.lines.join(''))
  },
)

t.test('ops erase a person by address from the CLI; the output names the account, never the person', async (t) => {
  const w = await world(t)
  const ctx = { config: w.api.pki.config, store: w.api.pki.store, actor: 'cli:ops-ana' }
  await t.rejects(eraseAccountByOps(ctx, EMAIL, ''), { code: 'KENNEL_ERR_VALIDATION' }, 'a reason is required')
  await t.rejects(eraseAccountByOps(ctx, 'nobody@example.org', 'ticket 7'), { code: 'KENNEL_ERR_NOT_FOUND' })
  const r = await eraseAccountByOps(ctx, EMAIL, 'ticket 4711: asked by post')
  t.same(r, { accountId: w.alice.accountId, households: 2, devices: 1, recordings: 1 })
  const erased = (await w.api.pki.store.readStream(`account-${w.alice.accountId}`)).at(-1)!
  t.match(erased, {
    type: 'AccountErased',
    data: { reason: 'ticket 4711: asked by post' },
    metadata: { actor: 'cli:ops-ana' },
  })
  await w.api.app.readModels.waitFor(await w.api.pki.store.headPosition())
  t.equal(
    (await w.api.app.inject({ method: 'GET', url: '/v1/households', headers: bearer(w.alice.token) })).statusCode,
    401,
    'the running API ends her sessions at once',
  )
  await t.rejects(
    eraseAccountByOps(ctx, w.alice.accountId, 'again'),
    { code: 'KENNEL_ERR_NOT_FOUND' },
    'an erased account is not erased twice',
  )
})

t.test('after erasure a rebuild of every projection from the first event still succeeds', async (t) => {
  const w = await world(t)
  t.equal((await erase(w)).statusCode, 200)
  const fresh = openSqliteReadModels(path.join(w.dir, 'rebuilt.sqlite'))
  t.teardown(() => fresh.close())
  const result = await rebuildProjections({ store: w.api.pki.store, readModels: fresh, projections: w.projections })
  t.same(result.projections.sort(), w.projections.map((p) => p.name).sort(), 'every projection rebuilt')
  const accounts = JSON.stringify((await fresh.load('api-accounts'))?.docs)
  t.ok(
    accounts.includes(w.bob.accountId) && accounts.includes(`"erasedAt"`),
    'the rebuilt accounts read model holds Bob and the erasure',
  )
  t.notOk(JSON.stringify((await fresh.load('api-households'))?.docs).includes(w.named), 'and not her households')
})

t.test('after erasure `kennel audit verify` still passes over the whole history', async (t) => {
  const w = await world(t)
  t.equal((await erase(w)).statusCode, 200)
  // heads signed over everything, erasure included (what kennel start does)
  const head = await w.api.pki.store.headPosition()
  await w.project()
  const result = await verifyAuditLog({
    store: w.api.pki.store,
    readModels: w.readModels,
    verifiers: [w.verifier],
    headEveryEvents: 10,
  })
  t.ok(result.ok, JSON.stringify(result.firstBreak))
  t.ok(
    result.headsChecked >= 3 && result.signedSize > head - 10,
    `${result.headsChecked} signed heads verified, the last over ${result.signedSize} events`,
  )
  t.ok(result.events >= head && result.leavesCompared >= head, `${result.events} events verified against their leaves`)
  const types = (await w.api.pki.store.readAll()).map((e) => e.type)
  t.ok(
    types.includes('AccountCreated') && types.includes('AccountErased'),
    'the history still holds her sign-up and her erasure',
  )
})
