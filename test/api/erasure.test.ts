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
import mqtt from 'mqtt'
import { createBroker } from '../../broker/broker.ts'
import { exportAccountByOps, listPendingErasures } from '../../bin/commands/account.ts'
import { eraseAccount } from '../../api/accounts/erasure.ts'
import { accountsProjection } from '../../api/accounts/projection.ts'
import { householdsProjection } from '../../api/households/projection.ts'
import { recordingsProjection } from '../../api/recordings/projection.ts'
import { checkCertificate, devicesProjection, deviceView } from '../../devices/registry.ts'
import { loadServerTls } from '../../devices/server-tls.ts'
import { KeyRing, loadMasterKey } from '../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../infra/keystore/files.ts'
import { HouseholdSources } from '../../infra/keystore/sealed-source.ts'
import { followProjections } from '../../projections/follow.ts'
import { bearer, buildTestApi, listenTestApi, request, STRONG } from './helpers.ts'

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
  const aliceToy = await api.pairedToy(alice.token, named, 'toy-alice')
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
  const bobToy = await api.pairedToy(bob.token, bob.householdId, 'toy-bob')
  await api.signUp('audit@example.org')
  await grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'audit@example.org', 'auditor')
  await grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'audit@example.org', 'ops')
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
    aliceToy,
    bobToy,
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

// A paired toy's address is its family's home address on the internet (R12): the broker and the
// device API seal it with the household's key, which erasing the household shreds. Alice's toy
// connects from 127.0.0.2 (her home), Bob's from 127.0.0.3: loopback addresses this test can tell apart.
const ALICE_HOME = '127.0.0.2'
const BOB_HOME = '127.0.0.3'

/** the broker as `kennel start` wires it: a paired toy's address sealed with its household's key */
async function startToyBroker(t: Test, w: Awaited<ReturnType<typeof world>>) {
  const { config, store, ca } = w.api.pki
  const devices = followProjections(store, [devicesProjection])
  t.teardown(() => devices.stop())
  await devices.caughtUp
  const households = new HouseholdSources(
    new KeyRing(fileKeyStore(config.dataDir), loadMasterKey(config), 'household-data'),
  )
  const broker = await createBroker({
    config: { ...config, mqttPort: 0 },
    store,
    tls: { ca: ca.trustedPem, ...(await loadServerTls(config, ca)) },
    checkCertificate: (id, serial, now) => checkCertificate(devices.docs, id, serial, now),
    log: createLogger('silent'),
    toySource: {
      householdOf: (id) => deviceView(devices.docs, id)?.householdId,
      source: (householdId, ip) => households.source(householdId, ip),
    },
  })
  const port = await broker.listen(0, '127.0.0.1')
  /** connect from `home` */
  const connect = async (toy: { keyPem: string; certPem: string; caPem: string; deviceId: string }, home: string) => {
    const client = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
      key: toy.keyPem,
      cert: toy.certPem,
      ca: toy.caPem,
      clientId: toy.deviceId,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...({ localAddress: home } as object),
    })
    t.teardown(() => client.endAsync(true).catch(() => undefined))
    await new Promise<void>(
      (resolve, reject) => (client.once('connect', () => resolve()), client.once('error', reject)),
    )
    return client
  }
  /** connect from `home`, publish one message (QoS 1), disconnect */
  const session = async (toy: { keyPem: string; certPem: string; caPem: string; deviceId: string }, home: string) => {
    const client = await connect(toy, home)
    await client.publishAsync(`toys/${toy.deviceId}/events/hello`, 'woof', { qos: 1 })
    await client.endAsync()
  }
  return { broker, devices, connect, session }
}

t.test(
  "a paired toy's address is sealed with its household's key: ops see it opened, and after the household's erasure no read model, API response, CLI output, breach report or event shows it",
  async (t) => {
    const w = await world(t)
    const { api, alice } = w
    const t0 = new Date(Date.now() - 3600_000).toISOString()
    const toys = await startToyBroker(t, w)
    await toys.session(w.aliceToy, ALICE_HOME)
    await toys.session(w.bobToy, BOB_HOME)
    // the toy's own request to the device API, from home too
    const server = await listenTestApi(t, api)
    const made = await request(server.port, {
      method: 'POST',
      path: '/v1/device/recordings',
      ca: server.caPem,
      key: w.aliceToy.keyPem,
      cert: w.aliceToy.certPem,
      body: { contentType: 'audio/ogg', bytes: 4 },
      localAddress: ALICE_HOME,
    })
    t.equal(made.status, 201, `the toy's request: ${made.status}`)
    const bobMade = await request(server.port, {
      method: 'POST',
      path: '/v1/device/recordings',
      ca: server.caPem,
      key: w.bobToy.keyPem,
      cert: w.bobToy.certPem,
      body: { contentType: 'audio/ogg', bytes: 4 },
      localAddress: BOB_HOME,
    })
    t.equal(bobMade.status, 201, `Bob's toy's request: ${bobMade.status}`)
    await toys.broker.flushEvents()

    const history = () => api.pki.store.readAll()
    const connected = (await history()).filter((e) => e.type === 'DeviceConnected' && e.stream === 'mqtt-toy-alice')
    t.equal(connected.length, 1)
    t.notOk('ip' in (connected[0]!.data as object), 'no address in the data')
    t.match(connected[0]!.metadata, {
      sourceIpSealed: /^[A-Za-z0-9+/]+=*$/,
      sourceIpTag: /^[A-Za-z0-9_-]{22}$/,
      sourceIpOwner: `household:${w.named}`,
    })
    t.notOk('sourceIp' in connected[0]!.metadata, 'nor in clear in the metadata')
    const published = (await history()).find((e) => e.type === 'PublishAccepted' && e.stream === 'mqtt-toy-alice')!
    t.notOk(
      'sourceIp' in published.metadata || 'sourceIpSealed' in published.metadata,
      "a message carries no address: its connection's events do",
    )
    const before = JSON.stringify(await history())
    t.notOk(
      before.includes(ALICE_HOME) || before.includes(BOB_HOME),
      "no event holds a paired toy's address in clear (kennel events tail, GET /v1/audit/events)",
    )
    const created = (await history()).find(
      (e) => e.type === 'RecordingCreated' && e.metadata.actor === 'device:toy-alice',
    )!
    t.match(created.metadata, { sourceIpOwner: `household:${w.named}` }, "the device API's events seal it too")

    const timeline = async (deviceId: string) => {
      const res = await api.app.inject({
        method: 'GET',
        url: `/v1/ops/devices/${deviceId}`,
        headers: bearer(w.auditor),
      })
      t.equal(res.statusCode, 200, `GET /v1/ops/devices/${deviceId}`)
      return res
        .json()
        .timeline.filter((e: { type: string }) => e.type === 'DeviceConnected' || e.type === 'DeviceDisconnected')
        .map((e: { data: { ip: string } }) => e.data.ip)
    }
    t.same(await timeline('toy-alice'), [ALICE_HOME, ALICE_HOME], "ops' timeline opens it with the household's key")

    // her toy is online when she erases herself: the broker cuts it off
    const online = await toys.connect(w.aliceToy, ALICE_HOME)
    const cutOff = new Promise<void>((resolve) => online.once('close', () => resolve()))
    t.equal((await erase(w)).statusCode, 200)
    await cutOff
    await toys.broker.flushEvents()
    const ended = (await history())
      .filter((e) => e.type === 'DeviceDisconnected' && e.stream === 'mqtt-toy-alice')
      .at(-1)!
    t.match(ended.data, { reason: 'revoked' }, 'the session open at the erasure ended')
    t.notOk('ip' in (ended.data as object) || 'sourceIp' in ended.metadata, 'and its end holds no address in clear')
    const after = await timeline('toy-alice')
    t.equal(after.length, 4)
    t.ok(
      after.slice(-2).every((ip: string) => ip === '[erased]') &&
        after.every((ip: string | undefined) => ip === '[erased]' || ip === undefined),
      "after the household's erasure it reads [erased] (or nothing, for the end of the connection cut off by the erasure)",
    )
    t.same(await timeline('toy-bob'), [BOB_HOME, BOB_HOME], "another household's toy is untouched")
    // an event written before addresses were sealed (in clear) still reads as it was
    await api.pki.store.append('mqtt-toy-bob', [
      {
        type: 'DeviceConnected',
        data: { deviceId: 'toy-bob', serial: w.bobToy.serial, ip: '198.51.100.7', clean: true, protocolVersion: 4 },
        metadata: { actor: 'device:toy-bob', credential: `cert:${w.bobToy.serial}`, sourceIp: '198.51.100.7' },
      },
    ])
    t.same(await timeline('toy-bob'), ['198.51.100.7', BOB_HOME, BOB_HOME], 'an older event keeps its address in clear')

    const shows = (what: string, text: string) =>
      t.notOk(text.includes(ALICE_HOME), `${what} shows no address of her toy`)
    shows('the event history (kennel events tail)', JSON.stringify(await history()))
    await w.project()
    const models: string[] = []
    for (const p of w.projections) models.push(JSON.stringify((await w.readModels.load(p.name))?.docs ?? []))
    shows('the persistent read models', models.join('\n'))
    const responses: string[] = []
    for (const url of ['/v1/ops/devices', '/v1/ops/devices/toy-alice', '/v1/ops/alerts', '/v1/audit/events?limit=1000'])
      responses.push((await api.app.inject({ method: 'GET', url, headers: bearer(w.auditor) })).body)
    for (const url of ['/v1/households', `/v1/households/${w.bob.householdId}/devices`])
      responses.push((await api.app.inject({ method: 'GET', url, headers: bearer(w.bob.token) })).body)
    shows('the API', responses.join('\n'))
    for (const credential of [`account:${alice.accountId}`, 'device:toy-alice', `cert:${w.aliceToy.serial}`]) {
      const report = await api.app.inject({
        method: 'POST',
        url: '/v1/audit/breach-reports',
        headers: bearer(w.auditor),
        payload: { credential, since: t0, until: new Date(Date.now() + 3600_000).toISOString() },
      })
      t.equal(report.statusCode, 201, `the breach report of ${credential}`)
      shows(`the breach report of ${credential}`, report.body)
    }
    // the CLI's export opens the address of Bob's toy's request for him: his household's key
    const bobs = JSON.stringify(
      await exportAccountByOps({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'bob@example.org'),
    )
    t.ok(bobs.includes(BOB_HOME), "Bob's export (kennel account export) shows where his toy asked from")
    shows("Bob's export", bobs)

    await toys.broker.close()
    // the history, sealed addresses and all, still rebuilds and verifies
    const fresh = openSqliteReadModels(path.join(w.dir, 'rebuilt.sqlite'))
    t.teardown(() => fresh.close())
    const rebuilt = await rebuildProjections({ store: api.pki.store, readModels: fresh, projections: w.projections })
    t.same(rebuilt.projections.sort(), w.projections.map((p) => p.name).sort(), 'every projection rebuilt')
    await w.project()
    const verified = await verifyAuditLog({
      store: api.pki.store,
      readModels: w.readModels,
      verifiers: [w.verifier],
      headEveryEvents: 10,
    })
    t.ok(verified.ok, JSON.stringify(verified.firstBreak))
  },
)

t.test(
  'an erasure interrupted midway is listed as unfinished (kennel account erasures --pending) until running it again finishes it',
  async (t) => {
    const w = await world(t)
    const ctx = { config: w.api.pki.config, store: w.api.pki.store, actor: 'cli:ops-ana' }
    t.same(await listPendingErasures(ctx), [], 'none before')
    // the erasure dies at its second step: the blob store fails to delete the recording
    const followed = followProjections(ctx.store, [
      devicesProjection,
      accountsProjection,
      householdsProjection,
      recordingsProjection,
    ])
    t.teardown(() => followed.stop())
    await followed.caughtUp
    const failing = {
      ...w.blobs,
      delete: async () => Promise.reject(new Error('blob store down')),
      shredHousehold: (id: string) => w.blobs.shredHousehold(id),
    } as unknown as typeof w.blobs
    const keys = new KeyRing(fileKeyStore(ctx.config.dataDir), loadMasterKey(ctx.config), 'person')
    const households = new KeyRing(fileKeyStore(ctx.config.dataDir), loadMasterKey(ctx.config), 'household-data')
    await t.rejects(
      eraseAccount(
        {
          store: ctx.store,
          docs: followed.docs,
          blobs: failing,
          personKeys: keys,
          householdKeys: households,
          now: new Date(),
          metadata: { actor: 'cli:ops-ana' },
        },
        w.alice.accountId,
        'ticket 99',
      ),
      /blob store down/,
    )
    t.same(
      (await ctx.store.readStream('device-toy-alice')).slice(-2).map((e) => e.type),
      ['DeviceRevoked', 'DeviceUnpaired'],
      'its first step was done',
    )

    const pending = await listPendingErasures(ctx)
    t.equal(pending.length, 1, 'the unfinished erasure is listed')
    await w.api.app.readModels.waitFor(await ctx.store.headPosition())
    const listed = await w.api.app.inject({ method: 'GET', url: '/v1/ops/erasures', headers: bearer(w.auditor) })
    t.match(
      listed.json(),
      {
        erasures: [
          { accountId: w.alice.accountId, reason: 'ticket 99', actor: 'cli:ops-ana', deviceIds: ['toy-alice'] },
        ],
      },
      'and by GET /v1/ops/erasures',
    )
    t.equal(
      (await w.api.app.inject({ method: 'GET', url: '/v1/ops/erasures', headers: bearer(w.bob.token) })).statusCode,
      403,
      'to ops only',
    )
    t.match(pending[0], {
      accountId: w.alice.accountId,
      reason: 'ticket 99',
      actor: 'cli:ops-ana',
      deviceIds: ['toy-alice'],
      recordingIds: [w.upload.recordingId],
    })
    t.same([...pending[0]!.householdIds].sort(), [w.alice.householdId, w.named].sort())
    t.notOk(
      JSON.stringify(pending).includes(EMAIL) || JSON.stringify(pending).includes('Dubois'),
      'the listing names the account, never the person',
    )
    const started = (await ctx.store.readStream(`account-${w.alice.accountId}`)).filter(
      (e) => e.type === 'AccountErasureStarted',
    )
    t.equal(started.length, 1, 'recorded as AccountErasureStarted')
    t.notOk('sourceIp' in started[0]!.metadata || 'sourceIpSealed' in started[0]!.metadata, 'with no source address')

    // ops run it again: the steps left are done, and the erasure is complete
    const r = await eraseAccountByOps(ctx, w.alice.accountId, 'ticket 99')
    t.same(
      r,
      { accountId: w.alice.accountId, households: 2, devices: 1, recordings: 1 },
      'what it set out to erase, the toy unpaired by the first run included',
    )
    t.equal(
      await w.blobs.stat(w.objectKey).catch((err: { code: string }) => err.code),
      undefined,
      'the recording is deleted now',
    )
    t.same(await listPendingErasures(ctx), [], 'and the erasure is no longer listed')
    await w.api.app.readModels.waitFor(await ctx.store.headPosition())
    t.same(
      (await w.api.app.inject({ method: 'GET', url: '/v1/ops/erasures', headers: bearer(w.auditor) })).json(),
      { erasures: [] },
      'by either',
    )
    const account = await ctx.store.readStream(`account-${w.alice.accountId}`)
    t.same(account.filter((e) => e.type === 'AccountErasureStarted').length, 1, 'the second run started no new erasure')
    t.equal(account.at(-1)!.type, 'AccountErased')
  },
)

t.test(
  'a toy paired while connected: its session records its address in clear only while it was unpaired, sealed from the pairing on',
  async (t) => {
    const w = await world(t)
    const { api } = w
    const NEW_HOME = '127.0.0.4'
    const toys = await startToyBroker(t, w)
    const toy = await api.pki.enroll('toy-new')
    const client = await toys.connect(toy, NEW_HOME)
    await client.publishAsync('toys/toy-new/events/hello', 'unboxed', { qos: 1 })
    const paired = await api.app.inject({
      method: 'POST',
      url: `/v1/households/${w.named}/devices`,
      headers: bearer(w.alice.token),
      payload: { claimCode: toy.claimCode },
    })
    t.equal(paired.statusCode, 201, 'paired while connected')
    const claimedAt = await api.pki.store.headPosition()
    await toys.devices.waitFor(claimedAt)
    for (let i = 0; i < 3; i++) await client.publishAsync('toys/toy-new/events/hello', `paired ${i}`, { qos: 1 })
    await client.endAsync()
    await toys.broker.flushEvents()

    const session = await api.pki.store.readStream('mqtt-toy-new')
    t.match(
      session[0],
      { type: 'DeviceConnected', data: { ip: NEW_HOME } },
      'connected while unpaired: in clear (docs/EVENTS.md)',
    )
    const after = session.filter((e) => e.position > claimedAt)
    t.same(
      after.map((e) => e.type),
      ['PublishAccepted', 'PublishAccepted', 'PublishAccepted', 'DeviceDisconnected'],
    )
    t.notOk(JSON.stringify(after).includes(NEW_HOME), 'nothing recorded after the pairing holds the address in clear')
    t.match(
      after.at(-1)!.metadata,
      { sourceIpOwner: `household:${w.named}`, sourceIpSealed: /./ },
      "its disconnection is sealed with the household's key",
    )
    t.notOk('ip' in (after.at(-1)!.data as object))

    t.equal((await erase(w)).statusCode, 200)
    const timeline = (
      await api.app.inject({ method: 'GET', url: '/v1/ops/devices/toy-new', headers: bearer(w.auditor) })
    ).json().timeline
    t.same(
      timeline
        .filter((e: { type: string; stream: string }) => e.type.startsWith('Device') && e.stream === 'mqtt-toy-new')
        .map((e: { type: string; data: { ip: string } }) => [e.type, e.data.ip]),
      [
        ['DeviceDisconnected', '[erased]'],
        ['DeviceConnected', NEW_HOME],
      ],
      'after the erasure: [erased], but for the connection made before the pairing',
    )
    await toys.broker.close()
  },
)
