import https from 'node:https'
import t, { type Test } from 'tap'
import { grantRole } from '../../bin/commands/account.ts'
import { CONSOLE_CSP } from '../../api/console/routes.ts'
import { bearer, buildTestApi, listenTestApi, STRONG, type TestApi } from './helpers.ts'

// What the console needs of the API: its files under a strict policy, who a token is, the fleet
// with certificate expiry and sessions, a toy's timeline, live alerts, the latest signed head,
// events by type and time, and a breach report with its CSV in one answer. The pages themselves
// are tested in Chromium (test/system/console-browser.test.ts).

const STRICT = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

async function world(t: Test, deps: Parameters<typeof buildTestApi>[1] = {}) {
  const api = await buildTestApi(t, deps)
  const alice = await api.parent('alice@example.org')
  await api.pairedToy(alice.token, alice.householdId, 'toy-alice')
  const login = async (email: string, role: 'ops' | 'auditor') => {
    await api.signUp(email)
    await grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, email, role)
    return (await api.app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password: STRONG } })).json()
      .token as string
  }
  return {
    api,
    alice,
    ops: await login('ops@example.org', 'ops'),
    auditor: await login('audit@example.org', 'auditor'),
  }
}

const get = (api: TestApi, url: string, token: string) => api.app.inject({ method: 'GET', url, headers: bearer(token) })

t.test('the console is a page and a few modules of this origin, under a policy that runs nothing inline', async (t) => {
  const { app } = await buildTestApi(t)
  const page = await app.inject({ method: 'GET', url: '/console' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  t.equal(page.headers['content-security-policy'], CONSOLE_CSP)
  t.notMatch(CONSOLE_CSP, /unsafe-|https?:|\*|data:|blob:/, 'no inline code, no other origin')
  const modules = [...page.body.matchAll(/<script type="module" src="\/console\/([a-z-]+\.js)"><\/script>/g)].map(
    (m) => m[1]!,
  )
  t.same(modules, ['main.js'])
  t.notMatch(page.body, /<script>|<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script')
  const files = ['main.js', 'api.js', 'dom.js', 'ops.js', 'audit.js', 'console.css']
  for (const file of files) {
    const res = await app.inject({ method: 'GET', url: `/console/${file}` })
    t.equal(res.statusCode, 200, file)
    t.match(res.headers['content-type'], file.endsWith('.js') ? /^text\/javascript/ : /^text\/css/)
    t.equal(res.headers['content-security-policy'], CONSOLE_CSP, `${file}: the console's policy`)
    t.notMatch(
      res.body,
      /https?:\/\/|\/\/cdn|innerHTML|outerHTML|insertAdjacentHTML|eval\(|new Function|localStorage|sessionStorage|document\.cookie/,
      `${file}: no other origin, no HTML from data, no token storage`,
    )
    for (const [, from] of res.body.matchAll(/^import .* from '([^']+)'/gm))
      t.match(from, /^\.\/[a-z-]+\.js$/, `${file} imports ${from} from the console only`)
  }
  for (const url of ['/console/../app.ts', '/console/routes.ts', '/console/%2e%2e%2fapp.ts', '/console/nope.js']) {
    const res = await app.inject({ method: 'GET', url })
    t.ok(res.statusCode === 404 || res.statusCode === 400, `${url}: ${res.statusCode}`)
    t.notMatch(res.body, /import|buildApi/, `${url}: no source`)
  }
  t.equal(
    (await app.inject({ method: 'GET', url: '/healthz' })).headers['content-security-policy'],
    STRICT,
    'other routes keep the policy that allows nothing',
  )
})

t.test('GET /v1/sessions/current names the account and its roles, and needs a token', async (t) => {
  const { api, ops, alice } = await world(t)
  const me = await get(api, '/v1/sessions/current', ops)
  t.equal(me.statusCode, 200)
  t.same(me.json().roles, ['ops'])
  t.match(me.json(), { accountId: /^[0-9a-f-]{36}$/, expiresAt: /^\d{4}-/ })
  t.same((await get(api, '/v1/sessions/current', alice.token)).json().roles, [])
  t.equal((await api.app.inject({ method: 'GET', url: '/v1/sessions/current' })).statusCode, 401)
})

t.test(
  'ops: the fleet shows certificate expiry and sessions, a toy its timeline; other roles are refused',
  async (t) => {
    const { api, ops, auditor, alice } = await world(t)
    await api.pki.store.append('mqtt-toy-alice', [
      { type: 'DeviceConnected', data: { deviceId: 'toy-alice', serial: 'x', ip: '127.0.0.1' } },
    ])
    await api.app.readModels.waitFor(await api.pki.store.headPosition())
    const fleet = await get(api, '/v1/ops/devices', ops)
    t.equal(fleet.statusCode, 200)
    const toy = fleet.json().devices.find((d: { deviceId: string }) => d.deviceId === 'toy-alice')
    t.match(toy, {
      status: 'active',
      householdId: alice.householdId,
      certificateExpiresAt: /^\d{4}-/,
      connected: true,
      lastSeenAt: /^\d{4}-/,
    })
    const one = await get(api, '/v1/ops/devices/toy-alice?limit=10', ops)
    t.equal(one.statusCode, 200)
    t.match(one.json().device, { deviceId: 'toy-alice', connected: true })
    t.equal(one.json().certificates.length, 1)
    const types = one.json().timeline.map((e: { type: string }) => e.type)
    t.same(
      types,
      ['DeviceConnected', 'DeviceClaimed', 'CertificateIssued', 'DeviceEnrolled'],
      'device and MQTT streams, newest first',
    )
    t.notMatch(one.body, /claimCodeHash|\$argon2/, "the claim code's hash is not shown to ops")
    t.equal((await get(api, '/v1/ops/devices/toy-alice?limit=2', ops)).json().timeline.length, 2)
    t.equal((await get(api, '/v1/ops/devices/toy-nobody', ops)).json().error.code, 'KENNEL_ERR_DEVICE_UNKNOWN')
    for (const token of [auditor, alice.token]) {
      const refused = await get(api, '/v1/ops/devices/toy-alice', token)
      t.equal(refused.statusCode, 403)
      t.same(refused.json(), { error: { code: 'KENNEL_ERR_FORBIDDEN', message: 'this route needs the ops role' } })
    }
    const reads = await api.pki.store.readAll({ filter: { types: ['PrivilegedRouteUsed'] } })
    t.ok(
      reads.some((e) => (e.data as { route: string }).route === 'GET /v1/ops/devices/:deviceId'),
      'reading a toy is recorded',
    )
  },
)

/** the first `count` server-sent events of a response, and the response's headers */
function readEvents(
  port: number,
  ca: string,
  token: string,
  count: number,
  onOpen: () => void,
): Promise<{ status: number; headers: Record<string, unknown>; events: unknown[] }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port,
        ca,
        path: '/v1/ops/alerts/live?limit=5',
        headers: bearer(token),
        agent: false,
      },
      (res) => {
        const events: unknown[] = []
        let buffer = ''
        if (res.statusCode !== 200)
          return res.resume().on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, events }))
        onOpen()
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          buffer += chunk
          // biome-ignore lint/suspicious/noImplicitAnyLet: a number, from indexOf
          for (let end; (end = buffer.indexOf('\n\n')) >= 0; buffer = buffer.slice(end + 2)) {
            const data = buffer
              .slice(0, end)
              .split('\n')
              .find((l) => l.startsWith('data: '))
            if (data) events.push(JSON.parse(data.slice(6)))
            if (events.length === count) {
              req.destroy()
              return resolve({ status: res.statusCode ?? 0, headers: res.headers, events })
            }
          }
        })
      },
    )
    req.on('error', reject)
  })
}

t.test('ops: live alerts send the newest ones, then each new one; one read is recorded for the stream', async (t) => {
  const { api, ops, auditor } = await world(t)
  const server = await listenTestApi(t, api)
  const alert = (rule: string) => ({
    type: 'SecurityAlertRaised',
    data: { rule, key: 'k', severity: 'warning', summary: `${rule} fired` },
  })
  await api.pki.store.append('alerts', [alert('earlier')])
  const before = (await api.pki.store.readAll({ filter: { types: ['PrivilegedRouteUsed'] } })).length
  const got = await readEvents(
    server.port,
    server.caPem,
    ops,
    2,
    () => void setTimeout(() => void api.pki.store.append('alerts', [alert('later')]), 50),
  )
  t.equal(got.status, 200)
  t.match(got.headers['content-type'], /^text\/event-stream/)
  t.equal(got.headers['content-security-policy'], STRICT, 'the stream has the API headers too')
  t.match(got.events, [
    { type: 'SecurityAlertRaised', data: { rule: 'earlier' } },
    { type: 'SecurityAlertRaised', data: { rule: 'later' } },
  ])
  t.equal((await api.pki.store.readAll({ filter: { types: ['PrivilegedRouteUsed'] } })).length, before + 1)
  const refused = await readEvents(server.port, server.caPem, auditor, 1, () => {})
  t.equal(refused.status, 403, 'an auditor gets no stream')
})

t.test(
  'auditors: the latest signed head, events by type and time, a breach report with its CSV recorded once',
  async (t) => {
    const head = {
      size: 12,
      root: 'a'.repeat(64),
      time: '2030-01-01T00:00:00Z',
      keyId: 'k1',
      signature: 'sig',
      position: 40,
    }
    const csv = 'report_id,contact\r\nr-1,alice@example.org\r\n'
    const { api, ops, auditor } = await world(t, {
      deps: {
        audit: {
          verify: async () => ({ ok: true }),
          latestHead: async () => head,
          breachReport: async () => ({ report: { reportId: 'r-1', notifications: [] }, csv }),
        },
      },
    })
    const got = await get(api, '/v1/audit/head', auditor)
    t.equal(got.statusCode, 200)
    t.same(got.json(), { head })
    t.equal((await get(api, '/v1/audit/head', ops)).statusCode, 403, 'ops may not')

    const all = await api.pki.store.readAll()
    const mid = all[Math.floor(all.length / 2)]!
    const byType = await get(api, '/v1/audit/events?type=DeviceClaimed', auditor)
    t.same(
      byType.json().events.map((e: { type: string }) => e.type),
      ['DeviceClaimed'],
    )
    const late = await get(api, `/v1/audit/events?since=${encodeURIComponent(mid.time)}&limit=1000`, auditor)
    t.ok(
      late.json().events.every((e: { time: string }) => e.time >= mid.time),
      'since: nothing earlier',
    )
    t.ok(
      late.json().events.some((e: { id: string }) => e.id === mid.id),
      'since: inclusive',
    )
    const early = await get(api, `/v1/audit/events?until=${encodeURIComponent(mid.time)}&limit=1000`, auditor)
    t.ok(
      early.json().events.length > 0 && early.json().events.every((e: { time: string }) => e.time < mid.time),
      'until: exclusive',
    )
    t.equal(early.json().next, undefined, 'no next page once until is passed')
    t.equal((await get(api, '/v1/audit/events?since=yesterday', auditor)).statusCode, 400)
    t.equal((await get(api, '/v1/audit/events?since=2000-01-01T00:00:00Z', ops)).statusCode, 403)

    const report = await api.app.inject({
      method: 'POST',
      url: '/v1/audit/breach-reports?with=csv',
      headers: bearer(auditor),
      payload: { credential: 'device:toy-alice', since: '2000-01-01', until: '2100-01-01' },
    })
    t.equal(report.statusCode, 201)
    t.same(report.json(), { reportId: 'r-1', notifications: [], csv }, 'the report and its CSV in one answer')
    t.equal(
      (
        await api.app.inject({
          method: 'POST',
          url: '/v1/audit/breach-reports?with=xml',
          headers: bearer(auditor),
          payload: { credential: 'device:toy-alice', since: '2000-01-01', until: '2100-01-01' },
        })
      ).statusCode,
      400,
    )
  },
)
