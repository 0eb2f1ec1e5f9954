import http from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import t, { type Test } from 'tap'
import type { RecordedEvent } from '../../../infra/eventstore/port.ts'
import { startAlertDelivery } from '../../../projections/monitor/delivery.ts'
import { createMonitorProjection } from '../../../projections/monitor/projection.ts'
import { OUTBOX, type OutboxEntry } from '../../../projections/outbox.ts'
import { MemoryDocuments } from '../../../projections/projection.ts'
import { rebuildProjections } from '../../../projections/rebuild.ts'
import { openSqliteReadModels } from '../../../projections/readmodels/sqlite.ts'
import { startProjectionRunner } from '../../../projections/runner.ts'
import { sandbox } from '../helpers.ts'
import path from 'node:path'

const silent = pino({ level: 'silent' })
let position = 0
const at = (second: number): string => new Date(Date.UTC(2026, 0, 1, 12, 0, 0) + second * 1000).toISOString()
const event = (
  type: string,
  second: number,
  data: Record<string, unknown>,
  metadata: Record<string, unknown> = {},
): RecordedEvent => ({
  id: `00000000-0000-4000-8000-${String(++position).padStart(12, '0')}`,
  type,
  stream: 's',
  revision: 0,
  position,
  time: at(second),
  data,
  metadata,
})

const alertsOf = (docs: MemoryDocuments) =>
  [...docs.values<OutboxEntry>(OUTBOX)].map((o) => o.event.data as { rule: string; key: string; count: number })

t.test('given a threshold of 3 failed authentications per IP in 60 s', async (t) => {
  const monitor = createMonitorProjection({ 'auth-failures-per-ip': { count: 3, windowSeconds: 60 } })
  const docs = new MemoryDocuments()
  const fail = (s: number, ip: string) =>
    monitor.apply(docs, event('DeviceAuthFailed', s, { reason: 'untrusted-certificate', ip }))
  fail(0, '198.51.100.1')
  fail(10, '198.51.100.1')
  fail(20, '198.51.100.2')
  t.same(alertsOf(docs), [], 'two failures from one IP: below the threshold, no alert')
  fail(30, '198.51.100.1')
  t.same(
    alertsOf(docs).map((a) => [a.rule, a.key, a.count]),
    [['auth-failures-per-ip', '198.51.100.1', 3]],
    'the third within 60 s fires exactly at the threshold',
  )
  fail(40, '198.51.100.1')
  t.equal(alertsOf(docs).length, 1, 'quiet for one window after firing')
  fail(200, '198.51.100.3')
  fail(261, '198.51.100.3')
  fail(322, '198.51.100.3')
  t.equal(alertsOf(docs).length, 1, 'three failures spread over more than 60 s do not fire')
})

t.test('each rule fires at its threshold and not below', async (t) => {
  const cases: Array<[string, number, (i: number) => RecordedEvent]> = [
    [
      'auth-failures-per-certificate',
      4,
      (i) => event('DeviceAuthFailed', i, { reason: 'certificate-expired', ip: `192.0.2.${i}`, fingerprint: 'fp1' }),
    ],
    [
      'revoked-certificate-attempt',
      1,
      (i) => event('DeviceAuthFailed', i, { reason: 'certificate-revoked', ip: '192.0.2.1', serial: 'ab01' }),
    ],
    ['denylist-hits', 5, (i) => event('ConnectionDenylisted', i, { ip: '203.0.113.7', hits: 1 })],
    [
      'rate-limit-storm',
      6,
      (i) => event('RateLimitExceeded', i, { limit: 'connect-ip', key: `k${i}`, ip: `192.0.2.${i}` }),
    ],
    [
      'download-volume-per-device',
      3,
      (i) => event('DownloadUrlIssued', i, { recordingId: `r${i}` }, { actor: 'device:d1' }),
    ],
    [
      'download-volume-per-account',
      3,
      (i) => event('DownloadUrlIssued', i, { recordingId: `r${i}` }, { actor: 'account:a1' }),
    ],
    [
      'login-ips-per-account',
      3,
      (i) => event('SessionStarted', i, { accountId: 'a1' }, { sourceIp: `192.0.2.${Math.floor(i / 2)}` }),
    ],
  ]
  for (const [rule, count, make] of cases) {
    const monitor = createMonitorProjection({ [rule]: { count, windowSeconds: 600 } })
    const docs = new MemoryDocuments()
    const fired = (): number => alertsOf(docs).filter((a) => a.rule === rule).length
    let i = 0
    let below = 0
    // login IPs count distinct addresses: each IP logs in twice, and the repeat adds nothing
    const needed = rule === 'login-ips-per-account' ? count * 2 - 1 : count
    for (; i < needed - 1; i++) monitor.apply(docs, make(i))
    below = fired()
    monitor.apply(docs, make(i++))
    t.same([below, fired()], [0, 1], `${rule}: no alert below ${count}, one at ${count}`)
  }
})

t.test('a weighted denylist event counts its hits', async (t) => {
  const monitor = createMonitorProjection({ 'denylist-hits': { count: 10, windowSeconds: 60 } })
  const docs = new MemoryDocuments()
  monitor.apply(docs, event('ConnectionDenylisted', 0, { ip: '203.0.113.8', hits: 9 }))
  t.equal(alertsOf(docs).length, 0)
  monitor.apply(docs, event('ConnectionDenylisted', 1, { ip: '203.0.113.8', hits: 1 }))
  t.equal(alertsOf(docs).length, 1)
})

t.test('alerts are appended once, with deterministic ids, and a rebuild raises no duplicate', async (t) => {
  const { store, readModels, dir } = await sandbox(t)
  const monitor = createMonitorProjection({
    'auth-failures-per-ip': { count: 3, windowSeconds: 3600 },
    'revoked-certificate-attempt': { count: 1, windowSeconds: 3600 },
  })
  const runner = await startProjectionRunner({ store, readModels, projections: [monitor] })
  await runner.caughtUp
  for (let i = 0; i < 5; i++)
    await store.append('security-2026-01-01', [
      { type: 'DeviceAuthFailed', data: { reason: 'untrusted-certificate', ip: '198.51.100.9' } },
    ])
  await store.append('security-2026-01-01', [
    { type: 'DeviceAuthFailed', data: { reason: 'device-revoked', ip: '198.51.100.10', serial: 'ee01' } },
  ])
  await runner.waitFor(await store.headPosition())
  await runner.stop()
  const alerts = await store.readStream('alerts')
  t.same(alerts.map((a) => (a.data as { rule: string }).rule).sort(), [
    'auth-failures-per-ip',
    'revoked-certificate-attempt',
  ])
  t.equal(alerts[0]!.metadata.actor, 'system:monitor')

  const other = openSqliteReadModels(path.join(dir, 'second.sqlite'))
  t.teardown(() => other.close())
  await rebuildProjections({ store, readModels: other, projections: [monitor] })
  await rebuildProjections({ store, readModels, projections: [monitor] })
  t.same(
    (await store.readStream('alerts')).map((a) => a.id),
    alerts.map((a) => a.id),
    'two rebuilds, one in another read-model store: no new alert',
  )
})

t.test('the webhook receives each alert once, retried with backoff; a final failure is an event', async (t) => {
  const { store, readModels } = await sandbox(t)
  const received: Array<{ id: string; rule: string }> = []
  const keys: Array<string | undefined> = []
  let failNext = 2
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d) => (body += d))
    req.on('end', () => {
      if (req.url === '/broken') return void res.writeHead(503).end()
      keys.push(req.headers['idempotency-key'] as string | undefined)
      if (failNext-- > 0) return void res.writeHead(500).end()
      received.push(JSON.parse(body))
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const monitor = createMonitorProjection({ 'revoked-certificate-attempt': { count: 1, windowSeconds: 3600 } })
  const runner = await startProjectionRunner({ store, readModels, projections: [monitor] })
  await store.append('security-x', [
    { type: 'DeviceAuthFailed', data: { reason: 'certificate-revoked', ip: '192.0.2.1', serial: 'ab01' } },
  ])
  await runner.waitFor(await store.headPosition())
  await runner.stop()
  const [alert] = await store.readStream('alerts')

  const delivery = await startAlertDelivery({ store, readModels, log: silent, webhook: `${base}/hook`, backoffMs: 5 })
  await delivery.caughtUp
  await delivery.stop()
  t.same(
    received.map((r) => [r.id, r.rule]),
    [[alert!.id, 'revoked-certificate-attempt']],
    'delivered after two failed attempts',
  )
  t.same(
    keys,
    [alert!.id, alert!.id, alert!.id],
    "every attempt carries the alert's event id as Idempotency-Key, for the receiver to drop repeats",
  )
  const again = await startAlertDelivery({ store, readModels, log: silent, webhook: `${base}/hook`, backoffMs: 5 })
  await again.caughtUp
  await again.stop()
  t.equal(received.length, 1, 'a restart does not deliver it again')

  // a second alert to a broken receiver
  const runner2 = await startProjectionRunner({ store, readModels, projections: [monitor] })
  await store.append('security-x', [
    { type: 'DeviceAuthFailed', data: { reason: 'certificate-revoked', ip: '192.0.2.1', serial: 'ab02' } },
  ])
  await runner2.waitFor(await store.headPosition())
  await runner2.stop()
  const broken = await startAlertDelivery({
    store,
    readModels,
    log: silent,
    webhook: `${base}/broken`,
    attempts: 3,
    backoffMs: 5,
  })
  await broken.caughtUp
  await broken.stop()
  const failures = (await store.readStream('alerts')).filter((e) => e.type === 'AlertDeliveryFailed')
  t.equal(failures.length, 1)
  t.match(failures[0]!.data, { attempts: 3, error: 'HTTP 503', rule: 'revoked-certificate-attempt' })
})

t.test('KENNEL_MONITOR_* thresholds decide when a rule of the configured monitor fires', async (t) => {
  const { loadConfig } = await import('../../../infra/config.ts')
  const { kennelProjections } = await import('../../../projections/catalogue.ts')
  const { testKeys } = await import('../helpers.ts')
  const { signer } = testKeys()
  const failuresUntilAlert = (env: Record<string, string>): number => {
    const monitor = kennelProjections(loadConfig(env), signer).find((p) => p.name === 'security-monitor')!
    const docs = new MemoryDocuments()
    for (let i = 1; i <= 50; i++) {
      monitor.apply(docs, event('DeviceAuthFailed', i, { reason: 'untrusted-certificate', ip: '198.51.100.77' }))
      if (alertsOf(docs).some((a) => a.rule === 'auth-failures-per-ip')) return i
    }
    return Infinity
  }
  t.equal(failuresUntilAlert({}), 20, 'default: the 20th failure within 60 s fires')
  t.equal(failuresUntilAlert({ KENNEL_MONITOR_AUTH_FAILURES_PER_IP: '3/60s' }), 3, '3/60s: the 3rd fires')
  t.equal(
    failuresUntilAlert({ KENNEL_MONITOR_AUTH_FAILURES_PER_IP: '10/5s' }),
    Infinity,
    '10/5s: one failure a second never reaches 10 within 5 s',
  )
  t.throws(
    () => loadConfig({ KENNEL_MONITOR_AUTH_FAILURES_PER_IP: '3 per minute' }),
    /KENNEL_MONITOR_AUTH_FAILURES_PER_IP must be a count within a window like 20\/60s/,
  )
})

t.test("the API's refused device certificates count like the broker's failed authentications", async (t) => {
  const monitor = createMonitorProjection({
    'auth-failures-per-certificate': { count: 5, windowSeconds: 60 },
    'auth-failures-per-ip': { count: 5, windowSeconds: 60 },
  })
  const docs = new MemoryDocuments()
  const refused = (s: number, data: Record<string, unknown>) =>
    monitor.apply(docs, event('DeviceAuthRefused', s, { route: '/v1/device/recordings', ...data }))
  refused(0, { reason: 'device-revoked', ip: '198.51.100.20', deviceId: 'toy-r', serial: 'aa01', attempts: 1 })
  t.same(
    alertsOf(docs).map((a) => [a.rule, a.key, a.count]),
    [['revoked-certificate-attempt', 'aa01', 1]],
    'a revoked certificate on the API: one critical alert',
  )
  refused(1, { reason: 'device-revoked', ip: '198.51.100.20', deviceId: 'toy-r', serial: 'aa01', attempts: 3 })
  t.equal(alertsOf(docs).length, 1, 'the folded rest of the burst raises no second revoked alert within the window')
  refused(2, { reason: 'untrusted:DEPTH_ZERO_SELF_SIGNED_CERT', ip: '198.51.100.21', fingerprint: 'f00d', attempts: 1 })
  refused(3, { reason: 'untrusted:DEPTH_ZERO_SELF_SIGNED_CERT', ip: '198.51.100.21', fingerprint: 'f00d', attempts: 3 })
  t.equal(alertsOf(docs).length, 1, '4 refusals: below both thresholds')
  monitor.apply(
    docs,
    event('DeviceAuthFailed', 4, { reason: 'self-signed-certificate', ip: '198.51.100.21', fingerprint: 'f00d' }),
  )
  t.same(
    alertsOf(docs)
      .slice(1)
      .map((a) => [a.rule, a.key, a.count])
      .sort(),
    [
      ['auth-failures-per-certificate', 'f00d', 5],
      ['auth-failures-per-ip', '198.51.100.21', 5],
    ],
    'with one on MQTT, the 5th of the same certificate and address fires each rule once',
  )
})

t.test('a burst of denylist hits is counted by the hits each event stands for', async (t) => {
  const monitor = createMonitorProjection({ 'denylist-hits': { count: 4, windowSeconds: 3600 } })
  const docs = new MemoryDocuments()
  monitor.apply(
    docs,
    event('ConnectionDenylisted', 0, { ip: '203.0.113.9', listener: 'api', cidr: '203.0.113.0/24', hits: 1 }),
  )
  monitor.apply(
    docs,
    event('ConnectionDenylisted', 60, { ip: '203.0.113.9', listener: 'api', cidr: '203.0.113.0/24', hits: 2 }),
  )
  t.same(alertsOf(docs), [], '3 hits: below 4')
  monitor.apply(docs, event('ConnectionDenylisted', 61, { ip: '203.0.113.9', port: 5000, hits: 1 }))
  t.same(
    alertsOf(docs).map((a) => [a.rule, a.count]),
    [['denylist-hits', 4]],
    'API and MQTT hits add up; one alert at 4',
  )
})

const alertOnce = async (
  store: Awaited<ReturnType<typeof sandbox>>['store'],
  readModels: Awaited<ReturnType<typeof sandbox>>['readModels'],
  serials: string[],
) => {
  const monitor = createMonitorProjection({ 'revoked-certificate-attempt': { count: 1, windowSeconds: 3600 } })
  const runner = await startProjectionRunner({ store, readModels, projections: [monitor] })
  for (const serial of serials)
    await store.append('security-x', [
      { type: 'DeviceAuthFailed', data: { reason: 'certificate-revoked', ip: '192.0.2.1', serial } },
    ])
  await runner.waitFor(await store.headPosition())
  await runner.stop()
  return (await store.readStream('alerts')).filter((e) => e.type === 'SecurityAlertRaised')
}

const receiver = async (t: Test, answer: () => number) => {
  const received: Array<{ id: string }> = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d) => (body += d))
    req.on('end', () => {
      const status = answer()
      if (status < 300) received.push(JSON.parse(body))
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  return { received, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` }
}

t.test('a stop during webhook retries records no failure and the alert is delivered after a restart', async (t) => {
  const { store, readModels } = await sandbox(t)
  const [alert] = await alertOnce(store, readModels, ['cd01'])
  let calls = 0
  const down = await receiver(t, () => (calls++, 503))
  const delivery = await startAlertDelivery({
    store,
    readModels,
    log: silent,
    webhook: down.url,
    attempts: 5,
    backoffMs: 100,
  })
  while (calls < 2) await new Promise((r) => setTimeout(r, 10))
  const stopping = Date.now()
  await delivery.stop()
  t.ok(Date.now() - stopping < 1000, 'the stop does not wait for the remaining retries')
  t.equal(calls, 2, 'no attempt after the stop')
  t.same(
    (await store.readStream('alerts')).filter((e) => e.type === 'AlertDeliveryFailed'),
    [],
    'no AlertDeliveryFailed for an alert that was not given up',
  )

  const up = await receiver(t, () => 204)
  const again = await startAlertDelivery({ store, readModels, log: silent, webhook: up.url, backoffMs: 5 })
  await again.caughtUp
  await again.stop()
  t.same(
    up.received.map((r) => r.id),
    [alert!.id],
    'delivered once after the restart, with its id',
  )
  t.same(
    (await store.readStream('alerts')).filter((e) => e.type === 'AlertDeliveryFailed'),
    [],
    'still no failure recorded',
  )
})

t.test(
  "each alert is logged when read, not behind another alert's retries; failed attempts log their cause",
  async (t) => {
    const { store, readModels } = await sandbox(t)
    const alerts = await alertOnce(store, readModels, ['ef01', 'ef02'])
    const lines: Array<{ level: number; msg: string; alertId?: string; error?: string }> = []
    const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) })
    // a port nothing listens on: every attempt is refused
    const closed = http.createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
    const port = (closed.address() as AddressInfo).port
    await new Promise<void>((r) => closed.close(() => r()))
    const delivery = await startAlertDelivery({
      store,
      readModels,
      log,
      webhook: `http://127.0.0.1:${port}/hook`,
      attempts: 3,
      backoffMs: 300,
    })
    while (lines.filter((l) => l.msg === 'alert webhook attempt failed').length < 1)
      await new Promise((r) => setTimeout(r, 10))
    t.same(
      lines.filter((l) => l.msg.startsWith('security alert:')).map((l) => l.alertId),
      alerts.map((a) => a.id),
      'both alerts are logged while the first is still being retried',
    )
    const attempt = lines.find((l) => l.msg === 'alert webhook attempt failed')!
    t.equal(attempt.level, 40, 'a failed attempt is a warning')
    t.match(attempt.error, /ECONNREFUSED/, 'with the cause, not only "fetch failed"')
    await delivery.caughtUp
    await delivery.stop()
    const failures = (await store.readStream('alerts')).filter((e) => e.type === 'AlertDeliveryFailed')
    t.same(
      failures.map((f) => (f.data as { alertId: string; attempts: number }).alertId),
      alerts.map((a) => a.id),
      'each alert given up once',
    )
    t.ok(
      failures.every(
        (f) =>
          (f.data as { attempts: number; error: string }).attempts === 3 &&
          /ECONNREFUSED/.test((f.data as { error: string }).error),
      ),
    )
    t.equal(lines.filter((l) => l.msg.startsWith('security alert:')).length, 2, 'each alert logged once')
  },
)

t.test(
  'a rate-limit storm folded into weighted events fires at its refusals, and an unweighted event counts one',
  async (t) => {
    const monitor = createMonitorProjection({ 'rate-limit-storm': { count: 10, windowSeconds: 60 } })
    const docs = new MemoryDocuments()
    const fired = (): number => alertsOf(docs).filter((a) => a.rule === 'rate-limit-storm').length
    monitor.apply(
      docs,
      event('RateLimitExceeded', 0, {
        limit: 'login-account-ip',
        ip: '198.51.100.20',
        retryAfterSeconds: 3600,
        refusals: 1,
      }),
    )
    monitor.apply(
      docs,
      event('RateLimitExceeded', 30, {
        limit: 'login-account-ip',
        ip: '198.51.100.20',
        retryAfterSeconds: 3570,
        refusals: 8,
      }),
    )
    t.equal(fired(), 0, 'nine refusals: below the threshold')
    monitor.apply(
      docs,
      event('RateLimitExceeded', 40, {
        limit: 'connect-ip',
        key: '198.51.100.21',
        ip: '198.51.100.21',
        retryAfterMs: 1000,
      }),
    )
    t.same(
      alertsOf(docs).map((a) => [a.rule, a.count]),
      [['rate-limit-storm', 10]],
      "the broker's event, without refusals, is the tenth: one alert",
    )
    monitor.apply(
      docs,
      event('RateLimitExceeded', 50, { limit: 'device-api', ip: '198.51.100.22', retryAfterSeconds: 10, refusals: 25 }),
    )
    t.equal(fired(), 1, 'quiet for one window after firing')
  },
)

t.test('refusals stored in every shape the broker and the API wrote raise the alerts of the one shape', async (t) => {
  type Stored = { stream: string; type: string; data: Record<string, unknown> }
  const anonymous = (data: Record<string, unknown>) => ({ actor: 'anonymous', sourceIp: String(data.ip) })
  // the same refusals twice: as kennel wrote them over time, and as it writes them now
  // (infra/net/events.ts); 1 + 7 + 1 + 3 = 12 rate-limit refusals, 2 + 1 + 4 = 7 denylist hits
  const earlier: Stored[] = [
    {
      stream: 'mqtt-toy-1',
      type: 'RateLimitExceeded',
      data: { limit: 'connect-ip', key: '192.0.2.7', ip: '192.0.2.7', deviceId: 'toy-1', retryAfterMs: 1500 },
    },
    {
      stream: 'mqtt-toy-1',
      type: 'RateLimitExceeded',
      data: {
        limit: 'publish-device',
        window: '100/second',
        deviceId: 'toy-1',
        serial: 'ab01',
        ip: '192.0.2.7',
        retryAfterSeconds: 1,
        refusals: 7,
      },
    },
    {
      stream: 'security-x',
      type: 'RateLimitExceeded',
      data: {
        limit: 'device-api',
        window: '60/minute',
        deviceId: 'toy-1',
        serial: 'ab01',
        ip: '192.0.2.8',
        retryAfterSeconds: 30,
      },
    },
    {
      stream: 'security-x',
      type: 'RateLimitExceeded',
      data: { limit: 'login-account-ip', accountId: 'a1', ip: '192.0.2.9', retryAfterSeconds: 600, refusals: 3 },
    },
    { stream: 'security-x', type: 'ConnectionDenylisted', data: { ip: '203.0.113.7', port: 40000, hits: 2 } },
    // the API's first shape counted the address's hits since start: the event weighed 1
    {
      stream: 'security-x',
      type: 'ConnectionDenylisted',
      data: { ip: '203.0.113.7', listener: 'api', cidr: '203.0.113.0/24', count: 57 },
    },
    {
      stream: 'security-x',
      type: 'ConnectionDenylisted',
      data: { ip: '203.0.113.7', listener: 'api', cidr: '203.0.113.0/24', hits: 4 },
    },
  ]
  const now: Stored[] = [
    {
      stream: 'mqtt-toy-1',
      type: 'RateLimitExceeded',
      data: {
        listener: 'mqtt',
        limit: 'connect-ip',
        window: '10/minute',
        deviceId: 'toy-1',
        serial: 'ab01',
        ip: '192.0.2.7',
        retryAfterSeconds: 2,
        refusals: 1,
      },
    },
    {
      stream: 'mqtt-toy-1',
      type: 'RateLimitExceeded',
      data: {
        listener: 'mqtt',
        limit: 'publish-device',
        window: '100/second',
        deviceId: 'toy-1',
        serial: 'ab01',
        ip: '192.0.2.7',
        retryAfterSeconds: 1,
        refusals: 7,
      },
    },
    {
      stream: 'security-x',
      type: 'RateLimitExceeded',
      data: {
        listener: 'api',
        limit: 'device-api',
        window: '60/minute',
        deviceId: 'toy-1',
        serial: 'ab01',
        ip: '192.0.2.8',
        retryAfterSeconds: 30,
        refusals: 1,
      },
    },
    {
      stream: 'security-x',
      type: 'RateLimitExceeded',
      data: {
        listener: 'api',
        limit: 'login-account-ip',
        accountId: 'a1',
        ip: '192.0.2.9',
        retryAfterSeconds: 600,
        refusals: 3,
      },
    },
    {
      stream: 'security-x',
      type: 'ConnectionDenylisted',
      data: { listener: 'mqtt', ip: '203.0.113.7', port: 40000, cidr: '203.0.113.0/24', hits: 2 },
    },
    {
      stream: 'security-x',
      type: 'ConnectionDenylisted',
      data: { listener: 'api', ip: '203.0.113.7', port: 40001, cidr: '203.0.113.0/24', hits: 1 },
    },
    {
      stream: 'security-x',
      type: 'ConnectionDenylisted',
      data: { listener: 'api', ip: '203.0.113.7', port: 40002, cidr: '203.0.113.0/24', hits: 4 },
    },
  ]
  const alertsFrom = async (events: Stored[], name: string) => {
    const { store, readModels } = await sandbox(t, name)
    const monitor = createMonitorProjection({
      'rate-limit-storm': { count: 12, windowSeconds: 3600 },
      'denylist-hits': { count: 7, windowSeconds: 3600 },
    })
    for (const { stream, type, data } of events) await store.append(stream, [{ type, data, metadata: anonymous(data) }])
    const runner = await startProjectionRunner({ store, readModels, projections: [monitor] })
    await runner.waitFor(await store.headPosition())
    await runner.stop()
    return (await store.readStream('alerts'))
      .filter((e) => e.type === 'SecurityAlertRaised')
      .map((e) => {
        const { rule, key, count, threshold, triggeringPosition } = e.data as {
          rule: string
          key: string
          count: number
          threshold: number
          triggeringPosition: number
        }
        return { rule, key, count, threshold, triggeringPosition }
      })
  }
  const fromEarlier = await alertsFrom(earlier, 'earlier')
  t.same(
    fromEarlier,
    [
      { rule: 'rate-limit-storm', key: 'all', count: 12, threshold: 12, triggeringPosition: 4 },
      { rule: 'denylist-hits', key: '203.0.113.7', count: 7, threshold: 7, triggeringPosition: 7 },
    ],
    'each alert at its threshold, on the event that reached it',
  )
  t.same(await alertsFrom(now, 'now'), fromEarlier, 'the same alerts from the one shape')
})
