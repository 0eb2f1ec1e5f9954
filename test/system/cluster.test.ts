import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import mqtt, { type MqttClient } from 'mqtt'
import pg from 'pg'
import t from 'tap'
import { findVerificationToken } from '../../api/accounts/tokens.ts'
import { enrollDevice, type EnrolledDevice } from '../../devices/enroll.ts'
import { loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { outboxDir, readOutbox } from '../../infra/mail/outbox.ts'
import { persistentProjectionNames, persistentProjections } from '../../bin/read-models.ts'
import { auditSigner, openKennelReadModels } from '../../projections/catalogue.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { rebuildProjections } from '../../projections/rebuild.ts'
import { request } from '../api/helpers.ts'
import { redisSkip } from '../broker/system.ts'
import { type ClusterNode, clusterMaterial, nodeMetric, startClusterNode } from '../../bench/cluster/nodes.ts'
import { dumpReadModels } from '../projections/helpers.ts'

// A cluster as an operator runs one (docs/OPERATIONS.md): `kennel start` processes with different
// KENNEL_ROLES on one PostgreSQL schema and one Redis, each with its own data directory, sharing
// the CA, the server certificate, the master key and the audit key through their settings.
//
//   A: broker,api      B: broker,projector      C: api,projector
//
// Toys on the brokers of A and B, the APIs of A and C; every cross-node rule is tried, then the
// active projector is killed (SIGKILL) while toys publish, and the other takes over. At the end
// the read models on PostgreSQL equal a rebuild from the events, `kennel audit verify` passes and
// the webhook received each alert once.

const bin = path.resolve(import.meta.dirname, '../../bin/kennel.js')
const run = promisify(execFile)
const pgBase = process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const redisUrl = process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const PASSWORD = 'violet-Harbour-43-quiet-Lantern'

const admin = new pg.Client({ connectionString: pgBase, connectionTimeoutMillis: 3000 })
const pgSkip = await admin.connect().then(
  () => false,
  (err: Error) => `PostgreSQL unreachable at ${pgBase.replace(/\/\/[^@]*@/, '//***@')}: ${err.message}`,
)
if (!pgSkip) t.teardown(() => admin.end())
const skip = pgSkip || (await redisSkip(redisUrl))

async function until(what: string, check: () => boolean | Promise<boolean>, deadlineMs = 30_000): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

function connectToy(port: number, toy: EnrolledDevice, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
    key: toy.keyPem,
    cert: toy.certPem,
    ca: toy.caPem,
    servername: 'localhost',
    clientId: toy.deviceId,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...opts,
  })
  return new Promise((resolve, reject) => {
    client.once(
      'connect',
      () => (client.removeAllListeners('error'), client.on('error', () => undefined), resolve(client)),
    )
    client.once('error', (err) => (client.end(true), reject(err)))
    client.once('close', () => reject(Object.assign(new Error('closed before CONNACK'), { code: 'closed' })))
  })
}

/** the outcome of a connect attempt: 'connected', or the CONNACK return code / 'closed' */
async function tryConnect(port: number, toy: EnrolledDevice): Promise<string> {
  try {
    const c = await connectToy(port, toy)
    await c.endAsync(true)
    return 'connected'
  } catch (err) {
    const e = err as { code?: number | string }
    return String(e.code ?? 'error')
  }
}

t.test('three kennel start nodes with different roles on PostgreSQL and Redis', { skip }, async (t) => {
  const schema = `kcluster_${randomBytes(5).toString('hex')}`
  const url = new URL(pgBase)
  url.searchParams.set('schema', schema)
  t.teardown(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  })

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-cluster-'))
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
  const webhookCalls: Array<{ id: string | undefined; body: { eventId?: string; rule?: string } }> = []
  const webhook = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      webhookCalls.push({ id: req.headers['idempotency-key'] as string | undefined, body: JSON.parse(body || '{}') })
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((r) => webhook.close(r)))

  const material = await clusterMaterial(root, url.toString(), redisUrl, {
    KENNEL_ALERT_WEBHOOK: `http://127.0.0.1:${(webhook.address() as { port: number }).port}/alerts`,
    KENNEL_LOG_LEVEL: 'info',
    KENNEL_MQTT_CONNECT_LIMITS: '4/minute',
    KENNEL_MQTT_PUBLISH_LIMITS: '100000/second',
    KENNEL_MQTT_BYTE_LIMITS: '1000000000/second',
    KENNEL_AUDIT_HEAD_EVERY_SECONDS: '1',
  })
  const { ca, config: seed } = material
  const startNode = (name: string, roles: string) => startClusterNode(t, material, root, name, roles)
  // B starts first, so that it holds the projector lease
  const B = await startNode('B', 'broker,projector')
  const A = await startNode('A', 'broker,api')
  const C = await startNode('C', 'api,projector')
  t.ok(A.ports.mqtt && A.ports.api, 'A: broker and API')
  t.ok(B.ports.mqtt && !B.ports.api, 'B: broker, no API')
  t.ok(!C.ports.mqtt && C.ports.api, 'C: API, no broker')

  const store = await openEventStore(url.toString(), { environment: 'test' })
  t.teardown(() => store.close())
  // fresh ids each run: the shared Redis keeps rate-limit windows and sessions by device id
  const tag = randomBytes(3).toString('hex')
  const toyIds = [`toy-ca-${tag}`, `toy-cb-${tag}`, `toy-cc-${tag}`, `toy-cd-${tag}`]
  const toys = new Map<string, EnrolledDevice>()
  for (const id of toyIds) toys.set(id, await enrollDevice({ store, ca, config: seed, actor: 'cli:test' }, id))
  const toy = (id: string): EnrolledDevice => toys.get(id)!
  const trust = toy(`toy-ca-${tag}`).caPem

  // a parent (sign-up on A, confirmed and logged in on C), ops and an auditor
  const api = (node: ClusterNode, method: string, p: string, body?: unknown, token?: string) =>
    request(node.ports.api!, {
      method,
      path: p,
      ca: trust,
      body,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    })
  async function account(email: string, signUpOn: ClusterNode, logInOn: ClusterNode): Promise<string> {
    t.equal(
      (await api(signUpOn, 'POST', '/v1/accounts', { email, password: PASSWORD })).status,
      202,
      `${email} signs up on ${signUpOn.name}`,
    )
    const mail = readOutbox(outboxDir(signUpOn.dir))
      .filter((m) => m.headers.to === email)
      .at(-1)
    t.equal(
      (await api(logInOn, 'POST', '/v1/accounts/verify', { token: findVerificationToken(mail?.text ?? '') })).status,
      200,
      `${email} confirms on ${logInOn.name}`,
    )
    const session = await api(logInOn, 'POST', '/v1/sessions', { email, password: PASSWORD })
    t.equal(session.status, 200, `${email} logs in on ${logInOn.name}`)
    return session.json().token as string
  }
  const parent = await account('parent@cluster.example', A, C)
  const ops = await account('ops@cluster.example', C, A)
  await run(process.execPath, [bin, 'account', 'grant', 'ops@cluster.example', 'ops'], { env: A.env })
  const auditor = await account('auditor@cluster.example', A, C)
  await run(process.execPath, [bin, 'account', 'grant', 'auditor@cluster.example', 'auditor'], { env: C.env })

  await t.test('a toy on A receives what the API on C sends it', async (t) => {
    const household = (await api(C, 'POST', '/v1/households', { name: 'Cluster family' }, parent)).json()
      .householdId as string
    t.equal(
      (
        await api(
          C,
          'POST',
          `/v1/households/${household}/devices`,
          { claimCode: toy(`toy-ca-${tag}`).claimCode },
          parent,
        )
      ).status,
      201,
      `the parent pairs toy-ca-${tag} on C`,
    )
    const onA = await connectToy(A.ports.mqtt!, toy(`toy-ca-${tag}`))
    t.teardown(() => onA.endAsync(true))
    await onA.subscribeAsync(`toys/toy-ca-${tag}/inbox/#`, { qos: 1 })
    const got = new Promise<string>((resolve) =>
      onA.once('message', (topic, payload) => resolve(`${topic} ${payload.toString()}`)),
    )
    // a recording for the toy, uploaded through C: completing it tells the toy on its inbox
    const content = randomBytes(512).toString('hex')
    const created = await api(
      C,
      'POST',
      `/v1/households/${household}/recordings`,
      { deviceId: `toy-ca-${tag}`, contentType: 'audio/ogg', bytes: Buffer.byteLength(content) },
      parent,
    )
    t.equal(created.status, 201, `the parent creates a recording for toy-ca-${tag} on C`)
    const upload = new URL(created.json().uploadUrl as string)
    const put = await request(Number(upload.port), {
      method: 'PUT',
      path: upload.pathname + upload.search,
      ca: trust,
      rawBody: content,
      headers: { 'content-type': 'audio/ogg' },
    })
    t.ok(put.status < 300, `uploaded to C (${put.status})`)
    const done = await api(C, 'POST', `/v1/recordings/${created.json().recordingId}/complete`, undefined, parent)
    t.equal(done.status, 200, 'completed on C')
    t.ok((await got).startsWith(`toys/toy-ca-${tag}/inbox/`), 'delivered to the toy on A')
  })

  await t.test(
    'revocation through the API of A closes the session on B; the toy cannot reconnect anywhere',
    async (t) => {
      const onB = await connectToy(B.ports.mqtt!, toy(`toy-cb-${tag}`))
      const closed = new Promise<number>((resolve) => onB.once('close', () => resolve(performance.now())))
      const started = performance.now()
      const revoked = await api(A, 'POST', `/v1/ops/devices/toy-cb-${tag}/revoke`, { reason: 'cluster test' }, ops)
      t.equal(revoked.status, 200, 'ops revoke on A')
      const ms = (await closed) - started
      t.pass(`the session on B closed ${ms.toFixed(0)} ms after the revocation was requested on A`)
      t.not(await tryConnect(A.ports.mqtt!, toy(`toy-cb-${tag}`)), 'connected', 'refused on A')
      t.not(await tryConnect(B.ports.mqtt!, toy(`toy-cb-${tag}`)), 'connected', 'refused on B')
    },
  )

  await t.test('rate limits are shared: connects spread over A and B count against one limit', async (t) => {
    // KENNEL_MQTT_CONNECT_LIMITS=4/minute per toy: four connects pass, wherever they land
    const outcomes: string[] = []
    for (const node of [A, B, A, B, A, B]) outcomes.push(await tryConnect(node.ports.mqtt!, toy(`toy-cc-${tag}`)))
    t.same(outcomes.slice(0, 4), ['connected', 'connected', 'connected', 'connected'], 'the first four connects pass')
    t.notOk(
      outcomes.slice(4).includes('connected'),
      `the fifth and sixth are refused on either node (${outcomes.slice(4).join(', ')})`,
    )
  })

  await t.test('one client id on two nodes: the older session is taken over', async (t) => {
    const first = await connectToy(A.ports.mqtt!, toy(`toy-cd-${tag}`))
    const firstClosed = new Promise<void>((resolve) => first.once('close', () => resolve()))
    const second = await connectToy(B.ports.mqtt!, toy(`toy-cd-${tag}`))
    t.teardown(() => second.endAsync(true))
    await firstClosed
    t.pass('the session on A closed when the toy connected on B')
    t.ok(second.connected, 'the session on B stays')
  })

  await t.test('the active projector is killed while toys publish; the standby takes over', async (t) => {
    // the toy that was taken over now publishes on B... which is the node killed: publish on A
    const publisher = await connectToy(A.ports.mqtt!, toy(`toy-ca-${tag}`), { clientId: `toy-ca-${tag}` })
    t.teardown(() => publisher.endAsync(true))
    let stop = false
    let acked = 0
    t.teardown(() => void (stop = true))
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        await publisher.publishAsync(`toys/toy-ca-${tag}/telemetry`, `m-${i}`, { qos: 1 })
        acked++
      }
    })()
    await until('publishes before the kill', () => acked >= 50)
    t.equal(await nodeMetric(B, 'kennel_projector_active'), 1, 'B holds the projector lease')
    t.equal(await nodeMetric(C, 'kennel_projector_active'), 0, 'C stands by')
    await B.kill9()
    const killedAt = performance.now()
    // the lease is the holder's PostgreSQL session: it ends with the process, and standbys try
    // every 2 s (a deadline, not a measurement: `npm run bench -- cluster` measures)
    await until('C to take the lease', async () => (await nodeMetric(C, 'kennel_projector_active')) === 1, 30_000)
    t.pass(`C took over ${((performance.now() - killedAt) / 1000).toFixed(1)} s after the kill`)
    await until('publishes after the kill', () => acked >= 150)
    stop = true
    await loop
    const head = await store.headPosition()
    await until(
      'C to apply what was appended meanwhile',
      async () => (await nodeMetric(C, 'kennel_projection_lag_events')) === 0 && (await projectedHead()) >= head,
      20_000,
    )
  })

  /** the lowest checkpoint of the persistent projections, read from the shared read-model store */
  async function projectedHead(): Promise<number> {
    const rm = await openKennelReadModels(loadConfig(C.env))
    try {
      const stored = await rm.checkpoints()
      return Math.min(...persistentProjectionNames().map((name) => stored.get(name) ?? -1))
    } finally {
      await rm.close()
    }
  }

  await t.test('a revoked toy knocking raises one alert, delivered once with an idempotency key', async (t) => {
    t.not(await tryConnect(A.ports.mqtt!, toy(`toy-cb-${tag}`)), 'connected', 'refused')
    await until('the alert at the webhook', () => webhookCalls.some((c) => c.body.rule !== undefined), 20_000)
    await new Promise((r) => setTimeout(r, 2000))
    const ids = webhookCalls.map((c) => c.id)
    t.ok(
      ids.every((id) => typeof id === 'string' && id.length > 0),
      'every delivery carries an Idempotency-Key',
    )
    t.equal(new Set(ids).size, ids.length, `each alert delivered once (${ids.length} deliveries)`)
  })

  await t.test('read models equal a rebuild, the audit log verifies, and a breach report answers', async (t) => {
    t.equal(await A.stop(), 0, 'A stops cleanly')
    const report = await api(
      C,
      'POST',
      '/v1/audit/breach-reports',
      {
        credential: `device:toy-cb-${tag}`,
        since: new Date(Date.now() - 3600_000).toISOString(),
        until: new Date(Date.now() + 60_000).toISOString(),
      },
      auditor,
    )
    t.equal(report.status, 201, `a breach report on C (${report.status})`)
    // C (the projector now) applies what is left, the tree heads it appends itself included
    for (let head = await store.headPosition(); ; ) {
      await until('C to apply the last events', async () => (await projectedHead()) >= head)
      await new Promise((r) => setTimeout(r, 300))
      const now = await store.headPosition()
      if (now === head) break
      head = now
    }
    t.equal(await C.stop(), 0, 'C stops cleanly')

    const config = loadConfig(C.env)
    const projections = persistentProjections(config, auditSigner(config))
    const names = projections.map((p) => p.name)
    const served = await openKennelReadModels(config)
    t.teardown(() => served.close())
    const rebuilt = openSqliteReadModels(path.join(root, 'rebuilt.readmodels.sqlite'))
    t.teardown(() => rebuilt.close())
    await rebuildProjections({ store, readModels: rebuilt, projections })
    t.same(
      await dumpReadModels(served, names),
      await dumpReadModels(rebuilt, names),
      'the read models on PostgreSQL equal a rebuild from the events',
    )
    const verify = await run(process.execPath, [bin, 'audit', 'verify'], { env: C.env }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, out: err.stdout + err.stderr }),
    )
    t.equal(verify.code, 0, `kennel audit verify passes: ${verify.out.trim().slice(0, 300)}`)
  })
})
