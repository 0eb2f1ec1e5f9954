import fs from 'node:fs'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import t from 'tap'
import { loadConfig } from '../../infra/config.ts'
import { createLogger } from '../../infra/log.ts'
import { everyRole, startKennel } from '../../bin/start.ts'
import { grantRole } from '../../bin/commands/account.ts'
import { enrollDevice } from '../../devices/enroll.ts'
import { request } from '../api/helpers.ts'
import { findVerificationToken } from '../../api/accounts/tokens.ts'
import { outboxDir, readOutbox } from '../../infra/mail/outbox.ts'
import { persistentProjections } from '../../bin/read-models.ts'
import { auditSigner } from '../../projections/catalogue.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { rebuildProjections } from '../../projections/rebuild.ts'
import { dumpReadModels } from '../projections/helpers.ts'

// The whole system as `kennel start` wires it (bin/start.ts), on port 0 and a temporary data
// dir: a toy, a parent, ops and an auditor, over real mTLS MQTT and real HTTPS.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-e2e-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const config = loadConfig({
  KENNEL_ENV: 'test',
  KENNEL_DATA_DIR: dir,
  KENNEL_MQTT_PORT: '0',
  KENNEL_API_PORT: '0',
  KENNEL_METRICS_PORT: '0',
  KENNEL_LOG_LEVEL: 'silent',
})
// every line the whole run logs, at the most verbose level, for the signed-URL check at the end
const logLines: string[] = []
const kennel = everyRole(
  await startKennel(config, createLogger('trace', 'kennel', { write: (line: string) => void logLines.push(line) })),
)
t.teardown(() => kennel.stop())
const ca = kennel.ca.trustedPem
const api = (method: string, p: string, opts: { token?: string; body?: unknown; key?: string; cert?: string } = {}) =>
  request(kennel.ports.api, {
    method,
    path: p,
    ca,
    body: opts.body,
    key: opts.key,
    cert: opts.cert,
    headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
  })

async function account(email: string): Promise<string> {
  const password = 'violet-Harbour-43-quiet-Lantern'
  t.equal((await api('POST', '/v1/accounts', { body: { email, password } })).status, 202, `${email} signs up`)
  // the confirmation mail, as `kennel start` writes it to the outbox of its data dir
  const mail = readOutbox(outboxDir(dir))
    .filter((m) => m.headers.to === email)
    .at(-1)
  t.equal(
    (await api('POST', '/v1/accounts/verify', { body: { token: findVerificationToken(mail?.text ?? '') } })).status,
    200,
    `${email} confirms the address`,
  )
  const session = await api('POST', '/v1/sessions', { body: { email, password } })
  t.equal(session.status, 200)
  return session.json().token as string
}

function fetchUrl(url: string, method: string, body?: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca,
        servername: 'localhost',
        headers: body ? { 'content-length': String(body.length), 'content-type': 'audio/ogg' } : {},
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

t.test('every listener is up on loopback on the ports it reports', async (t) => {
  t.ok(kennel.ports.mqtt > 0 && kennel.ports.api > 0 && kennel.ports.metrics > 0)
  t.equal((await api('GET', '/healthz')).status, 200)
})

t.test('a toy and a parent exchange a recording, and ops revocation closes the toy session', async (t) => {
  const toy = await enrollDevice({ store: kennel.store, ca: kennel.ca, config, actor: 'cli:test' }, 'toy-e2e')
  const client = await mqtt.connectAsync(`mqtts://localhost:${kennel.ports.mqtt}`, {
    key: toy.keyPem,
    cert: toy.certPem,
    ca,
    clientId: 'toy-e2e',
    reconnectPeriod: 0,
  })
  t.teardown(() => client.endAsync(true))
  await client.subscribeAsync('toys/toy-e2e/inbox/#', { qos: 1 })
  const inbox: Array<{ topic: string; payload: string }> = []
  client.on('message', (topic, payload) => inbox.push({ topic, payload: payload.toString() }))
  await client.publishAsync('toys/toy-e2e/telemetry', 'battery=97', { qos: 1 })

  const parent = await account('parent@e2e.example')
  const household = await api('POST', '/v1/households', { token: parent, body: { name: 'E2E' } })
  t.equal(household.status, 201)
  const householdId = household.json().householdId as string
  const paired = await api('POST', `/v1/households/${householdId}/devices`, {
    token: parent,
    body: { claimCode: toy.claimCode },
  })
  t.equal(paired.status, 201, 'the parent pairs the toy with its claim code')

  const audio = Buffer.from('OggS pretend voice message')
  const created = await api('POST', `/v1/households/${householdId}/recordings`, {
    token: parent,
    body: { deviceId: 'toy-e2e', contentType: 'audio/ogg', bytes: audio.length },
  })
  t.equal(created.status, 201)
  const { recordingId, uploadUrl, expiresAt } = created.json() as {
    recordingId: string
    uploadUrl: string
    expiresAt: string
  }
  t.ok(Date.parse(expiresAt) - Date.now() <= 300_000, 'the upload URL expires within the default 300 s')
  const put = await fetchUrl(uploadUrl, 'PUT', audio)
  t.ok(put.status >= 200 && put.status < 300, `upload through the presigned URL (${put.status})`)
  t.equal((await api('POST', `/v1/recordings/${recordingId}/complete`, { token: parent })).status, 200)
  for (let i = 0; i < 200 && inbox.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.match(inbox[0], { topic: 'toys/toy-e2e/inbox/recordings' }, 'the toy is told over MQTT')
  t.match(inbox[0]!.payload, recordingId)

  const listed = await api('GET', '/v1/device/recordings', { key: toy.keyPem, cert: toy.certPem })
  t.equal(listed.status, 200)
  t.match(listed.body, recordingId, 'the toy lists the recording addressed to it')
  const download = await api('GET', `/v1/device/recordings/${recordingId}/download-url`, {
    key: toy.keyPem,
    cert: toy.certPem,
  })
  t.equal(download.status, 200)
  const fetched = await fetchUrl(download.json().url as string, 'GET')
  t.same(fetched.body, audio, 'the toy downloads exactly the bytes the parent uploaded')
  const stored = fs.readdirSync(path.join(dir), { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
  t.notOk(
    stored.some((e) => fs.readFileSync(path.join(e.parentPath, e.name)).includes(audio)),
    'no file in the data dir holds the recording in clear (R12)',
  )

  const ops = await account('ops@e2e.example')
  await grantRole({ config, store: kennel.store, actor: 'cli:test' }, 'ops@e2e.example', 'ops')
  await new Promise((r) => setTimeout(r, 100))
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  const revoked = await api('POST', '/v1/ops/devices/toy-e2e/revoke', {
    token: ops,
    body: { reason: 'lost at the park' },
  })
  t.equal(revoked.status, 200, 'ops revokes the toy')
  await closed
  t.pass('the live MQTT session was closed')
  const again = await new Promise<string>((resolve) => {
    const c = mqtt.connect(`mqtts://localhost:${kennel.ports.mqtt}`, {
      key: toy.keyPem,
      cert: toy.certPem,
      ca,
      clientId: 'toy-e2e',
      reconnectPeriod: 0,
    })
    c.once('connect', () => (c.end(true), resolve('connected')))
    c.once('error', (err) => (c.end(true), resolve(err.message)))
    c.once('close', () => resolve('closed before CONNACK'))
  })
  t.not(again, 'connected', `the revoked toy cannot reconnect (${again})`)
  t.equal(
    (await api('GET', '/v1/device/recordings', { key: toy.keyPem, cert: toy.certPem })).status,
    403,
    'nor call the API',
  )

  const auditor = await account('auditor@e2e.example')
  await grantRole({ config, store: kennel.store, actor: 'cli:test' }, 'auditor@e2e.example', 'auditor')
  await new Promise((r) => setTimeout(r, 100))
  const verify = await api('GET', '/v1/audit/verify', { token: auditor })
  t.equal(verify.status, 200, 'the auditor verifies the log')
  t.match(verify.json(), { ok: true })
  const report = await api('POST', '/v1/audit/breach-reports', {
    token: auditor,
    body: { credential: 'device:toy-e2e', since: '2000-01-01T00:00:00Z', until: '2100-01-01T00:00:00Z' },
  })
  t.equal(report.status, 201)
  t.match(JSON.stringify(report.json()), householdId, 'the breach report names the toy household')
  t.match(JSON.stringify(report.json()), recordingId)
  t.same(
    report.json().notifications.map((n: { contact: string }) => n.contact),
    ['parent@e2e.example'],
    'and whom to write to: the parent, by the address of her sign-up',
  )
  t.match(
    report.json().households,
    [
      {
        householdId,
        topics: [
          { action: 'publish', topic: 'toys/toy-e2e/telemetry', count: 1 },
          { action: 'subscribe', topic: 'toys/toy-e2e/inbox/#' },
        ],
      },
    ],
    'the topics the toy used, as the broker recorded them',
  )
})

t.test('/metrics on loopback reports broker, API and projection figures', async (t) => {
  const text = await new Promise<string>((resolve, reject) => {
    import('node:http').then(({ get }) =>
      get(`http://127.0.0.1:${kennel.ports.metrics}/metrics`, (res) => {
        let body = ''
        res.on('data', (c) => (body += c))
        res.on('end', () => resolve(body))
      }).on('error', reject),
    )
  })
  t.match(text, /kennel_mqtt_clients_connected \d/)
  t.match(text, /kennel_api_requests_total/)
  t.match(text, /kennel_projection_lag_events \d/)
})

t.test('every read model the server persisted equals a rebuild from zero', async (t) => {
  // the runner appends tree heads after its commits: wait until it has applied its own too
  for (let head = await kennel.store.headPosition(); ; ) {
    await kennel.projections.waitFor(head, 10_000)
    await new Promise((r) => setTimeout(r, 150))
    const now = await kennel.store.headPosition()
    if (now === head) break
    head = now
  }
  const projections = persistentProjections(config, auditSigner(config))
  const names = projections.map((p) => p.name)
  t.same(names.sort(), ['api-accounts', 'api-households', 'api-recordings', 'audit', 'devices', 'security-monitor'])
  const served = openSqliteReadModels(path.join(dir, 'readmodels.sqlite'))
  t.teardown(() => served.close())
  const stored = await served.load('devices')
  const toy = stored?.docs.find(([c, id]) => c === 'devices' && id === 'toy-e2e')?.[2] as
    | { status: string; lastConnectedAt?: string }
    | undefined
  t.match(
    toy,
    { status: 'revoked', lastConnectedAt: /^\d{4}-/ },
    'the devices read model is stored, with when the toy was last seen',
  )
  const rebuilt = openSqliteReadModels(path.join(dir, 'rebuilt.readmodels.sqlite'))
  t.teardown(() => rebuilt.close())
  await rebuildProjections({ store: kennel.store, readModels: rebuilt, projections })
  t.same(await dumpReadModels(rebuilt, names), await dumpReadModels(served, names))
})

t.test('no log line of the whole run carries a signed URL or its signature (R5)', async (t) => {
  t.ok(
    logLines.some((l) => l.includes('"url":"/v1/blobs/rec-')),
    'the uses of the presigned URLs were logged (as paths)',
  )
  for (const needle of ['sig=', 'X-Amz-Signature', 'X-Amz-Credential']) {
    const found = logLines.filter((l) => l.toLowerCase().includes(needle.toLowerCase()))
    t.same(found, [], `no line contains ${needle}`)
  }
})
