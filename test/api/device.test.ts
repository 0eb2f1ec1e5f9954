import https from 'node:https'
import t, { type Test } from 'tap'
import { connectionDenylistedData, rateLimitExceededData } from '../../infra/net/events.ts'
import { expiredCertificate, foreignCaCertificate, makeCsr, selfSignedCertificate } from '../helpers/pki.ts'
import { bearer, buildTestApi, listenTestApi, request } from './helpers.ts'
import { until } from '../system/kennel-child.ts'

// Device routes over real HTTPS with real client certificates (R2, R4, R6).

async function setup(t: Test, env: Record<string, string> = {}) {
  const api = await buildTestApi(t, { env })
  const server = await listenTestApi(t, api)
  const alice = await api.parent('alice@example.org')
  const bob = await api.parent('bob@example.org')
  const x = await api.pairedToy(alice.token, alice.householdId, 'toy-x')
  const y = await api.pairedToy(bob.token, bob.householdId, 'toy-y')
  const as = (toy: { keyPem: string; certPem: string }) => (method: string, path: string, body?: unknown) =>
    request(server.port, { method, path, ca: server.caPem, key: toy.keyPem, cert: toy.certPem, body })
  return { api, server, alice, bob, x, y, asX: as(x), asY: as(y) }
}

t.test('a toy uploads a recording, completes it, lists and downloads it over mTLS', async (t) => {
  const { api, server, asX, x } = await setup(t)
  const created = await asX('POST', '/v1/device/recordings', { contentType: 'audio/ogg', bytes: 4 })
  t.equal(created.status, 201, created.body)
  const { recordingId, url, headers } = created.json()
  t.match(url, new RegExp(`^https://(localhost|127\\.0\\.0\\.1):${server.port}/v1/blobs/rec-[0-9a-f]{40}\\?`))
  const u = new URL(url)
  const upload = await new Promise<number>((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: server.port,
        method: 'PUT',
        path: u.pathname + u.search,
        ca: server.caPem,
        headers: { ...headers, 'content-length': '4' },
        agent: false,
      },
      (res) => (res.resume(), resolve(res.statusCode!)),
    )
    req.on('error', reject)
    req.end(Buffer.from('woof'))
  })
  t.equal(upload, 204)
  const done = await asX('POST', `/v1/device/recordings/${recordingId}/complete`)
  t.equal(done.status, 200, done.body)
  t.equal(done.json().status, 'stored')
  const list = await asX('GET', '/v1/device/recordings')
  t.same(
    list.json().recordings.map((r: { recordingId: string }) => r.recordingId),
    [recordingId],
  )
  const dl = await asX('GET', `/v1/device/recordings/${recordingId}/download-url`)
  t.equal(dl.status, 200)
  const d = new URL(dl.json().url)
  const got = await request(server.port, { method: 'GET', path: d.pathname + d.search, ca: server.caPem })
  t.equal(got.body, 'woof')
  t.equal(
    (
      await request(server.port, {
        method: 'GET',
        path: d.pathname + d.search.replace(/sig=(.)/, (_, c: string) => `sig=${c === 'A' ? 'B' : 'A'}`),
        ca: server.caPem,
      })
    ).status,
    403,
    'a tampered URL is refused and not recorded as a use',
  )
  const events = await api.pki.store.readStream(`recording-${recordingId}`)
  t.same(
    events.map((e) => [e.type, e.metadata.actor, e.metadata.credential]),
    [
      ['RecordingCreated', 'device:toy-x', `cert:${x.serial}`],
      ['UploadUrlIssued', 'device:toy-x', `cert:${x.serial}`],
      ['RecordingUploaded', 'anonymous', undefined],
      ['RecordingStored', 'device:toy-x', `cert:${x.serial}`],
      ['DownloadUrlIssued', 'device:toy-x', `cert:${x.serial}`],
      ['RecordingDownloaded', 'anonymous', undefined],
    ],
  )
  t.match(
    events[5],
    { data: { recordingId, until: dl.json().expiresAt }, metadata: { sourceIp: '127.0.0.1' } },
    'the use names the URL it used by its expiry',
  )
})

t.test("toy Y cannot reach toy X's recordings", async (t) => {
  const { asX, asY, alice } = await setup(t)
  const { recordingId } = (await asX('POST', '/v1/device/recordings', { contentType: 'audio/ogg', bytes: 4 })).json()
  for (const [method, path] of [
    ['GET', `/v1/device/recordings/${recordingId}/download-url`],
    ['POST', `/v1/device/recordings/${recordingId}/complete`],
  ]) {
    const res = await asY(method!, path!)
    t.equal(res.status, 404, `${method} ${path}`)
    t.notOk(res.body.includes('toy-x') || res.body.includes(alice.householdId), 'nothing of X')
  }
  const list = await asY('GET', '/v1/device/recordings')
  t.same(list.json().recordings, [])
})

t.test('refused certificates: none, foreign CA, self-signed, expired, revoked (R2, R3)', async (t) => {
  const { api, server, asX, x } = await setup(t)
  const none = await request(server.port, { method: 'GET', path: '/v1/device/recordings', ca: server.caPem })
  t.equal(none.status, 401)
  t.equal(none.json().error.code, 'KENNEL_ERR_CERT_INVALID')
  const parentToken = await request(server.port, {
    method: 'GET',
    path: '/v1/device/recordings',
    ca: server.caPem,
    headers: bearer(`kt_${'A'.repeat(43)}`),
  })
  t.equal(parentToken.status, 401, 'a bearer token is no device identity')
  for (const [what, creds] of [
    ['foreign CA', await foreignCaCertificate('toy-x')],
    ['self-signed', await selfSignedCertificate('toy-x')],
    ['expired', await expiredCertificate(api.pki.ca, 'toy-x')],
  ] as const) {
    const res = await request(server.port, {
      method: 'GET',
      path: '/v1/device/recordings',
      ca: server.caPem,
      key: creds.keyPem,
      cert: creds.certPem,
    })
    t.equal(res.status, 401, what)
    t.equal(res.json().error.code, 'KENNEL_ERR_CERT_INVALID', what)
    t.same(res.json().error.message.includes('toy-x'), false)
  }
  t.equal((await asX('GET', '/v1/device/recordings')).status, 200)
  const { revokeDevice } = await import('../../devices/revoke.ts')
  await revokeDevice({ store: api.pki.store, actor: 'cli:test' }, 'toy-x', 'lost')
  await api.app.readModels.waitFor(await api.pki.store.headPosition())
  const revoked = await asX('GET', '/v1/device/recordings')
  t.equal(revoked.status, 403)
  t.equal(revoked.json().error.code, 'KENNEL_ERR_DEVICE_REVOKED')
  for (let i = 0; i < 3; i++) t.equal((await asX('GET', '/v1/device/recordings')).status, 403)
  const refusals = await api.pki.store.readAll({ filter: { types: ['DeviceAuthRefused'] } })
  const revokedRefusals = refusals.filter(
    (e) => e.metadata.credential === `cert:${x.serial}` && (e.data as { reason: string }).reason === 'device-revoked',
  )
  t.equal(revokedRefusals.length, 1, 'the revoked attempt is an event, once per block')
  t.match(
    revokedRefusals[0]!.data,
    { serial: x.serial, deviceId: 'toy-x', fingerprint: /^[0-9a-f]{64}$/, attempts: 1 },
    'it stands for one attempt; the rest of the burst is counted',
  )
  await api.app.close()
  const flushed = (await api.pki.store.readAll({ filter: { types: ['DeviceAuthRefused'] } })).filter(
    (e) => e.metadata.credential === `cert:${x.serial}` && (e.data as { reason: string }).reason === 'device-revoked',
  )
  t.same(
    flushed.map((e) => (e.data as { attempts: number }).attempts),
    [1, 3],
    'the other three attempts are recorded when the API stops',
  )
})

t.test('per-certificate limit: the 61st device request in a minute gets 429 (R6)', async (t) => {
  const { api, server, x, asY } = await setup(t)
  const agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca: server.caPem, key: x.keyPem, cert: x.certPem })
  t.teardown(() => agent.destroy())
  const statuses: number[] = []
  for (let i = 1; i <= 60; i++)
    statuses.push(
      (await request(server.port, { method: 'GET', path: '/v1/device/recordings', ca: server.caPem, agent })).status,
    )
  t.same(statuses, Array(60).fill(200), '60 requests pass')
  const over = await request(server.port, { method: 'GET', path: '/v1/device/recordings', ca: server.caPem, agent })
  t.equal(over.status, 429)
  t.equal(over.json().error.code, 'KENNEL_ERR_RATE_LIMITED')
  t.ok(Number(over.headers['retry-after']) >= 1 && Number(over.headers['retry-after']) <= 60)
  const again = await request(server.port, { method: 'GET', path: '/v1/device/recordings', ca: server.caPem, agent })
  t.equal(again.status, 429)
  t.equal((await asY('GET', '/v1/device/recordings')).status, 200, 'another certificate is not affected')
  const events = await api.pki.store.readAll({ filter: { types: ['RateLimitExceeded'] } })
  t.equal(events.length, 1, 'one event per block, not one per refused request')
  t.match(events[0], {
    data: {
      listener: 'api',
      limit: 'device-api',
      window: '60/minute',
      deviceId: 'toy-x',
      serial: x.serial,
      refusals: 1,
    },
    metadata: { actor: 'device:toy-x', credential: `cert:${x.serial}` },
  })
  t.same(
    events[0]!.data,
    rateLimitExceededData(events[0]!.data),
    'written in the one shape the broker writes too (infra/net/events.ts), nothing to upcast',
  )
  await api.app.close()
  const flushed = await api.pki.store.readAll({ filter: { types: ['RateLimitExceeded'] } })
  t.same(
    flushed.map((e) => (e.data as { refusals: number }).refusals),
    [1, 1],
    'the second 429 is recorded, with its number, when the API stops',
  )
})

t.test('a toy renews its certificate with a CSR and the new one works', async (t) => {
  const { server, asX } = await setup(t)
  const foreign = await makeCsr({ commonName: 'toy-y' })
  const wrong = await asX('POST', '/v1/device/certificate', { csr: foreign.csrPem })
  t.equal(wrong.status, 400, 'a CSR for another toy is refused')
  const csr = await makeCsr({ commonName: 'toy-x' })
  const res = await asX('POST', '/v1/device/certificate', { csr: csr.csrPem })
  t.equal(res.status, 200, res.body)
  const renewed = res.json()
  t.match(renewed.certPem, /BEGIN CERTIFICATE/)
  const withNew = await request(server.port, {
    method: 'GET',
    path: '/v1/device/recordings',
    ca: server.caPem,
    key: csr.keyPem,
    cert: renewed.certPem,
  })
  t.equal(withNew.status, 200)
})

t.test('denylisted addresses are dropped on accept, before TLS (R9)', async (t) => {
  const api = await buildTestApi(t, { env: { KENNEL_DENYLIST: '127.0.0.0/8' } })
  const server = await listenTestApi(t, api)
  await t.rejects(
    request(server.port, { method: 'GET', path: '/healthz', ca: server.caPem }),
    'the connection is closed',
  )
  t.equal((await api.metrics.denylistHits.get()).values[0]?.value, 1)
  for (let i = 0; i < 2; i++)
    await t.rejects(request(server.port, { method: 'GET', path: '/healthz', ca: server.caPem }))
  const hits = async () =>
    (await api.pki.store.readAll({ filter: { types: ['ConnectionDenylisted'] } })).map(
      (e) => (e.data as { hits: number }).hits,
    )
  // the first hit's append is on its way when the connection closes: wait for it, not for a time
  await until('the first hit recorded', async () => (await hits()).length > 0)
  t.same(await hits(), [1], 'the first hit is recorded at once; the rest of the burst is counted')
  const [first] = await api.pki.store.readAll({ filter: { types: ['ConnectionDenylisted'] } })
  t.match(first!.data, { listener: 'api', ip: '127.0.0.1', port: Number, cidr: '127.0.0.0/8', hits: 1 })
  t.same(
    first!.data,
    connectionDenylistedData(first!.data),
    'written in the one shape the broker writes too (infra/net/events.ts), nothing to upcast',
  )
  await server.close()
  t.same(await hits(), [1, 2], 'the rest of the burst is recorded on close: 3 hits, 2 events')
})

t.test("a keep-alive connection does not outlive the toy's certificate", async (t) => {
  let now = new Date()
  const api = await buildTestApi(t, { deps: { now: () => now } })
  const server = await listenTestApi(t, api)
  const alice = await api.parent('alice@example.org')
  const x = await api.pairedToy(alice.token, alice.householdId, 'toy-x')
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: server.caPem, key: x.keyPem, cert: x.certPem })
  t.teardown(() => agent.destroy())
  const get = () => request(server.port, { method: 'GET', path: '/v1/device/recordings', ca: server.caPem, agent })
  t.equal((await get()).status, 200)
  now = new Date(Date.now() + 3650 * 86_400_000)
  const late = await get()
  t.equal(late.status, 401, 'the same connection, after the certificate expired')
  t.match(late.json().error.message, /CERT_HAS_EXPIRED/)
})
