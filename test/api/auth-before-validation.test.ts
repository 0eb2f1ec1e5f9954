import t from 'tap'
import { bearer, buildTestApi, listenTestApi, request } from './helpers.ts'

// Authentication and roles are decided before the body is parsed and before params, query and
// body are validated (R4, R13): a caller who may not use a route gets the same 401/403 for a
// valid and an invalid request, with nothing of the route's schema in it.

type Call = { method: 'GET' | 'POST' | 'DELETE'; url: string; payload?: unknown }

/** per route: a request that passes validation and one that fails it (params, query or body) */
const privileged: Array<{ role: string; valid: Call; invalid: Call[] }> = [
  {
    role: 'ops',
    valid: { method: 'POST', url: '/v1/ops/devices/toy-bob/revoke', payload: { reason: 'stolen' } },
    invalid: [
      { method: 'POST', url: '/v1/ops/devices/toy-bob/revoke', payload: { reason: 'x', extra: true } },
      { method: 'POST', url: '/v1/ops/devices/NOT..VALID/revoke', payload: { reason: 'stolen' } },
      { method: 'POST', url: '/v1/ops/devices/toy-bob/revoke', payload: '{"reason":' },
    ],
  },
  {
    role: 'ops',
    valid: { method: 'GET', url: '/v1/ops/devices' },
    invalid: [{ method: 'GET', url: '/v1/ops/devices?limit=1' }],
  },
  {
    role: 'ops',
    valid: { method: 'GET', url: '/v1/ops/devices/toy-bob' },
    invalid: [
      { method: 'GET', url: '/v1/ops/devices/NOT..VALID' },
      { method: 'GET', url: '/v1/ops/devices/toy-bob?limit=0' },
    ],
  },
  {
    role: 'ops',
    valid: { method: 'GET', url: '/v1/ops/alerts/live?limit=5' },
    invalid: [
      { method: 'GET', url: '/v1/ops/alerts/live?limit=abc' },
      { method: 'GET', url: '/v1/ops/alerts/live?follow=1' },
    ],
  },
  {
    role: 'ops',
    valid: { method: 'GET', url: '/v1/ops/alerts?limit=5' },
    invalid: [
      { method: 'GET', url: '/v1/ops/alerts?limit=abc' },
      { method: 'GET', url: '/v1/ops/alerts?limit=0&secret=1' },
    ],
  },
  {
    role: 'auditor',
    valid: { method: 'GET', url: '/v1/audit/events?from=0&limit=10' },
    invalid: [
      { method: 'GET', url: '/v1/audit/events?type=%3Cscript%3E' },
      { method: 'GET', url: '/v1/audit/events?since=yesterday' },
      { method: 'GET', url: '/v1/audit/events?from=-1' },
      { method: 'GET', url: '/v1/audit/events?stream=..%2Fetc' },
      { method: 'GET', url: '/v1/audit/events?limit=100000' },
    ],
  },
  {
    role: 'auditor',
    valid: { method: 'GET', url: '/v1/audit/head' },
    invalid: [{ method: 'GET', url: '/v1/audit/head?x=1' }],
  },
  {
    role: 'auditor',
    valid: { method: 'GET', url: '/v1/audit/verify' },
    invalid: [{ method: 'GET', url: '/v1/audit/verify?x=1' }],
  },
  {
    role: 'auditor',
    valid: {
      method: 'POST',
      url: '/v1/audit/breach-reports',
      payload: { credential: 'device:toy-bob', from: '2030-01-01', to: '2030-02-01' },
    },
    invalid: [
      { method: 'POST', url: '/v1/audit/breach-reports', payload: { credential: 'root:*' } },
      {
        method: 'POST',
        url: '/v1/audit/breach-reports',
        payload: { credential: 'device:toy-bob', from: '2030-01-01', to: '2030-02-01', actor: 'cli:root' },
      },
    ],
  },
]

/** a 401/403 that says nothing but "not you": no validation wording, no schema fragment */
const SCHEMA_WORDS = /must|params|querystring|body|pattern|additional|required|property|JSON|maxLength|minimum|maximum/i

t.test(
  'a parent on every ops and auditor route: 403 before validation, identical for valid and invalid requests',
  async (t) => {
    const api = await buildTestApi(t)
    const alice = await api.parent('alice@example.org')
    for (const { role, valid, invalid } of privileged) {
      const send = (c: Call) =>
        api.app.inject({
          method: c.method,
          url: c.url,
          headers: {
            ...bearer(alice.token),
            ...(typeof c.payload === 'string' ? { 'content-type': 'application/json' } : {}),
          },
          ...(c.payload !== undefined ? { payload: c.payload as string } : {}),
        })
      const baseline = await send(valid)
      t.equal(baseline.statusCode, 403, `${valid.method} ${valid.url}`)
      t.same(baseline.json(), { error: { code: 'KENNEL_ERR_FORBIDDEN', message: `this route needs the ${role} role` } })
      for (const c of invalid) {
        const res = await send(c)
        const what = `${c.method} ${c.url} ${typeof c.payload === 'string' ? c.payload : JSON.stringify(c.payload ?? '')}`
        t.equal(res.statusCode, 403, what)
        t.equal(res.body, baseline.body, `${what}: the same answer as a valid request`)
        t.notMatch(res.body, SCHEMA_WORDS, `${what}: no schema detail`)
      }
    }
    t.equal(
      (
        await api.pki.store.readAll({
          filter: { types: ['DeviceRevoked', 'PrivilegedRouteUsed', 'BreachReportGenerated'] },
        })
      ).length,
      0,
      'nothing was done or recorded as done',
    )
  },
)

t.test('anonymous callers get 401 before validation on every authenticated route', async (t) => {
  const api = await buildTestApi(t)
  const parentRoutes: Call[] = [
    { method: 'POST', url: '/v1/households', payload: { name: 42, extra: true } },
    { method: 'POST', url: '/v1/households/not-a-uuid/devices', payload: { claimCode: '<script>' } },
    { method: 'GET', url: '/v1/households/not-a-uuid/devices' },
    { method: 'GET', url: '/v1/households/not-a-uuid/recordings' },
    { method: 'POST', url: '/v1/households/not-a-uuid/recordings', payload: { bytes: 'many' } },
    { method: 'POST', url: '/v1/recordings/not-a-uuid/complete' },
    { method: 'GET', url: '/v1/recordings/not-a-uuid/download-url' },
    { method: 'DELETE', url: '/v1/sessions/current' },
  ]
  for (const c of [...privileged.flatMap((r) => r.invalid), ...parentRoutes]) {
    const res = await api.app.inject({
      method: c.method,
      url: c.url,
      ...(typeof c.payload === 'string' ? { headers: { 'content-type': 'application/json' } } : {}),
      ...(c.payload !== undefined ? { payload: c.payload as string } : {}),
    })
    const what = `${c.method} ${c.url}`
    t.equal(res.statusCode, 401, what)
    t.equal(res.json().error.code, 'KENNEL_ERR_UNAUTHENTICATED', what)
    t.notMatch(res.json().error.message, SCHEMA_WORDS, `${what}: no schema detail`)
  }
})

t.test('device routes without a client certificate get 401 before validation, over real HTTPS', async (t) => {
  const api = await buildTestApi(t)
  const server = await listenTestApi(t, api)
  const calls: Call[] = [
    { method: 'POST', url: '/v1/device/recordings', payload: { contentType: 'text/html', bytes: 'x', extra: 1 } },
    { method: 'GET', url: '/v1/device/recordings?x=1' },
    { method: 'POST', url: '/v1/device/recordings/not-a-uuid/complete' },
    { method: 'GET', url: '/v1/device/recordings/not-a-uuid/download-url' },
    { method: 'POST', url: '/v1/device/certificate', payload: { csr: 'short' } },
  ]
  for (const c of calls) {
    const res = await request(server.port, {
      method: c.method,
      path: c.url,
      ca: server.caPem,
      ...(c.payload !== undefined ? { body: c.payload } : {}),
    })
    const what = `${c.method} ${c.url}`
    t.equal(res.status, 401, what)
    t.same(
      res.json(),
      { error: { code: 'KENNEL_ERR_CERT_INVALID', message: 'no client certificate was presented' } },
      what,
    )
  }
})
