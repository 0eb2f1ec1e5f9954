import t from 'tap'
import { DOCS_CSP } from '../../api/docs/routes.ts'
import { bearer, buildTestApi, listenTestApi, request, STRONG } from './helpers.ts'

t.test('every error has one shape with a catalogue code', async (t) => {
  const { app, parent } = await buildTestApi(t)
  const alice = await parent('alice@example.org')
  const notFound = await app.inject({ method: 'GET', url: '/nope' })
  t.equal(notFound.statusCode, 404)
  t.equal(notFound.json().error.code, 'KENNEL_ERR_NOT_FOUND')
  const invalid = await app.inject({
    method: 'POST',
    url: '/v1/accounts',
    payload: { email: 'not-an-email', password: STRONG },
  })
  t.equal(invalid.statusCode, 400)
  t.equal(invalid.json().error.code, 'KENNEL_ERR_VALIDATION')
  const extra = await app.inject({
    method: 'POST',
    url: '/v1/accounts',
    payload: { email: 'a@example.org', password: STRONG, role: 'ops' },
  })
  t.equal(extra.statusCode, 400, 'unknown properties are refused, not dropped')
  t.match(extra.json().error.message, /additional properties/)
  const stringly = await app.inject({
    method: 'POST',
    url: `/v1/households/${alice.householdId}/recordings`,
    headers: { ...bearer(alice.token), 'content-type': 'application/json' },
    payload: '{"deviceId":"toy-a","contentType":"audio/ogg","bytes":"5"}',
  })
  t.equal(stringly.statusCode, 400, 'JSON bodies are not coerced: "5" is no integer')
  t.equal(stringly.json().error.code, 'KENNEL_ERR_VALIDATION')
  const badJson = await app.inject({
    method: 'POST',
    url: '/v1/accounts',
    headers: { 'content-type': 'application/json' },
    payload: '{"email":',
  })
  t.equal(badJson.statusCode, 400)
  t.equal(badJson.json().error.code, 'KENNEL_ERR_VALIDATION')
  const big = await app.inject({
    method: 'POST',
    url: '/v1/accounts',
    payload: { email: 'a@example.org', password: 'x'.repeat(100_000) },
  })
  t.equal(big.statusCode, 413)
  t.equal(big.json().error.code, 'KENNEL_ERR_PAYLOAD_TOO_LARGE')
  const media = await app.inject({
    method: 'POST',
    url: '/v1/accounts',
    headers: { 'content-type': 'text/xml' },
    payload: '<a/>',
  })
  t.equal(media.statusCode, 415)
  t.equal(media.json().error.code, 'KENNEL_ERR_UNSUPPORTED_MEDIA_TYPE')
  const noAuth = await app.inject({ method: 'GET', url: '/v1/households' })
  t.equal(noAuth.statusCode, 401)
  t.equal(noAuth.json().error.code, 'KENNEL_ERR_UNAUTHENTICATED')
  for (const res of [notFound, invalid, noAuth]) t.same(Object.keys(res.json()), ['error'])
})

t.test(
  "Fastify's own errors use the same shape: broken percent-encoding, over-long parameters, bad JSON, media type, unknown route",
  async (t) => {
    const api = await buildTestApi(t)
    const server = await listenTestApi(t, api)
    const cases: Array<[string, string, Record<string, string>, string | undefined, number, string]> = [
      ['GET', '/%zz', {}, undefined, 400, 'KENNEL_ERR_VALIDATION'],
      ['GET', '/v1/households/%E0%A4%A/devices', {}, undefined, 400, 'KENNEL_ERR_VALIDATION'],
      ['POST', '/v1/sessions%ZZ', { 'content-type': 'application/json' }, '{}', 400, 'KENNEL_ERR_VALIDATION'],
      ['GET', `/v1/recordings/${'a'.repeat(300)}/download-url`, {}, undefined, 400, 'KENNEL_ERR_VALIDATION'],
      ['POST', '/v1/sessions', { 'content-type': 'application/json' }, '{"email":', 400, 'KENNEL_ERR_VALIDATION'],
      [
        'POST',
        '/v1/sessions',
        { 'content-type': 'application/x-www-form-urlencoded' },
        'email=a',
        415,
        'KENNEL_ERR_UNSUPPORTED_MEDIA_TYPE',
      ],
      ['DELETE', '/v1/no/such/route', {}, undefined, 404, 'KENNEL_ERR_NOT_FOUND'],
    ]
    for (const [method, path, headers, body, status, code] of cases) {
      const viaInject = await api.app.inject({
        method: method as 'GET',
        url: path,
        headers,
        ...(body !== undefined ? { payload: body } : {}),
      })
      const viaHttps = await request(server.port, {
        method,
        path,
        ca: server.caPem,
        headers: { ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) },
        ...(body !== undefined ? { rawBody: body } : {}),
      })
      for (const [how, got, json, h] of [
        ['inject', viaInject.statusCode, viaInject.json(), viaInject.headers],
        ['https', viaHttps.status, viaHttps.json(), viaHttps.headers],
      ] as const) {
        t.equal(got, status, `${how} ${method} ${path}`)
        t.same(Object.keys(json), ['error'], `${how} ${method} ${path}: only "error"`)
        t.same(Object.keys(json.error).sort(), ['code', 'message'])
        t.equal(json.error.code, code, `${how} ${method} ${path}`)
        t.notMatch(json.error.code, /^FST_/)
        t.equal(h['x-content-type-options'], 'nosniff', `${how} ${method} ${path}: security headers too`)
      }
    }
  },
)

t.test('security headers on API responses', async (t) => {
  const { app } = await buildTestApi(t)
  const res = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['strict-transport-security'], /max-age=\d{8}/)
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.equal(res.headers['x-frame-options'], 'DENY')
  t.equal(res.headers['cache-control'], 'no-store')
  t.match(res.headers['content-security-policy'], /default-src 'none'/)
  t.match(res.headers['content-security-policy'], /frame-ancestors 'none'/)
  const err = await app.inject({ method: 'GET', url: '/v1/nothing' })
  t.equal(err.headers['cache-control'], 'no-store', 'errors too')
})

t.test('/.well-known/security.txt follows RFC 9116 (R10)', async (t) => {
  const now = new Date('2030-03-01T10:00:00.000Z')
  const { app } = await buildTestApi(t, {
    env: {
      KENNEL_SECURITY_CONTACT: 'mailto:psirt@toys.example',
      KENNEL_SECURITY_TXT_EXPIRES_DAYS: '90',
      KENNEL_PUBLIC_URL: 'https://api.toys.example',
    },
    deps: { now: () => now },
  })
  // the Canonical URL is the configured origin, whatever Host the request names
  const res = await app.inject({ method: 'GET', url: '/.well-known/security.txt', headers: { host: 'evil.example' } })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; charset=utf-8/)
  const fields = Object.fromEntries(
    res.body
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]),
  )
  t.same(fields, {
    Contact: 'mailto:psirt@toys.example',
    Expires: '2030-05-30T10:00:00Z',
    'Preferred-Languages': 'en',
    Canonical: 'https://api.toys.example/.well-known/security.txt',
  })
})

t.test('OpenAPI describes the routes from their schemas', async (t) => {
  const { app } = await buildTestApi(t)
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.equal(doc.openapi, '3.0.3')
  for (const p of [
    '/v1/accounts',
    '/v1/sessions',
    '/v1/households/{householdId}/devices',
    '/v1/device/recordings',
    '/v1/ops/devices/{deviceId}/revoke',
    '/v1/audit/events',
  ])
    t.ok(doc.paths[p], p)
  t.equal(doc.paths['/v1/accounts'].post.requestBody.content['application/json'].schema.additionalProperties, false)
})

t.test(
  '/docs serves Swagger UI with a policy of its own; every other route keeps the one that allows nothing',
  async (t) => {
    const { app } = await buildTestApi(t)
    const ui = await app.inject({ method: 'GET', url: '/docs' })
    t.equal(ui.statusCode, 200)
    t.match(ui.headers['content-type'], /^text\/html/)
    t.match(ui.body, /<div id="swagger-ui">/)
    t.notMatch(ui.body, /<script>|<script [^>]*>[^<\s]/, 'no inline script: every script is a file of this origin')
    t.equal(ui.headers['content-security-policy'], DOCS_CSP)
    t.match(DOCS_CSP, /script-src 'self'(;|$)/, 'scripts from this origin only')
    t.notMatch(DOCS_CSP, /unsafe-|https:|\*/, 'nothing inline, no other origin')
    const bundle = await app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' })
    t.equal(bundle.statusCode, 200)
    t.equal(bundle.headers['content-security-policy'], DOCS_CSP)
    const init = await app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' })
    t.match(init.body, /\/json/, 'the UI loads the spec from this origin')
    for (const url of ['/healthz', '/docs-not', '/v1/households', '/.well-known/security.txt']) {
      const res = await app.inject({ method: 'GET', url })
      t.equal(
        res.headers['content-security-policy'],
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        url,
      )
    }
    const spec = await app.inject({ method: 'GET', url: '/docs/json' })
    t.equal(spec.statusCode, 200)
    t.equal(spec.json().openapi, '3.0.3')
    t.notOk(spec.json().paths['/docs'], 'the UI routes are not in the document')
  },
)

t.test('audit verify and breach reports answer 503 when the audit port is not wired', async (t) => {
  const { app, pki, signUp } = await buildTestApi(t)
  await signUp('aud@example.org')
  const { grantRole } = await import('../../bin/commands/account.ts')
  await grantRole({ config: pki.config, store: pki.store, actor: 'cli:test' }, 'aud@example.org', 'auditor')
  const token = (
    await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'aud@example.org', password: STRONG } })
  ).json().token
  const res = await app.inject({ method: 'GET', url: '/v1/audit/verify', headers: bearer(token) })
  t.equal(res.statusCode, 503)
  t.equal(res.json().error.code, 'KENNEL_ERR_UNAVAILABLE')
  t.equal(res.headers['retry-after'], '1', 'a 503 says when to retry')
})

t.test('bodies are validated as sent, query strings are converted', async (t) => {
  const { app, parent } = await buildTestApi(t)
  const alice = await parent('alice@example.org')
  const send = (payload: string) =>
    app.inject({
      method: 'POST',
      url: `/v1/households/${alice.householdId}/recordings`,
      headers: { ...bearer(alice.token), 'content-type': 'application/json' },
      payload,
    })
  for (const body of [
    '{"deviceId":"toy-a","contentType":"audio/ogg","bytes":"5"}',
    '{"deviceId":"toy-a","contentType":"audio/ogg","bytes":[5]}',
    '{"deviceId":"toy-a","contentType":"audio/ogg","bytes":true}',
  ]) {
    const res = await send(body)
    t.equal(res.statusCode, 400, body)
    t.equal(res.json().error.code, 'KENNEL_ERR_VALIDATION', body)
  }
  t.equal(
    (await send('{"deviceId":"toy-a","contentType":"audio/ogg","bytes":5}')).statusCode,
    404,
    'the same body with a number passes validation (no such toy)',
  )
  const q = (qs: string) => app.inject({ method: 'GET', url: `/v1/blobs/rec-${'a'.repeat(40)}?${qs}` })
  const valid = `h=x&ct=&len=0&expires=9999999999&sig=${'A'.repeat(43)}`
  t.equal(
    (await q(valid)).json().error.code,
    'KENNEL_ERR_URL_SIGNATURE',
    'integers in the query string are converted and pass validation',
  )
  for (const bad of [
    valid.replace('len=0', 'len=zero'),
    valid.replace('len=0', 'len=1.5'),
    valid.replace('len=0', 'len=0&len=1'),
  ]) {
    const res = await q(bad)
    t.equal(res.statusCode, 400, bad)
    t.equal(res.json().error.code, 'KENNEL_ERR_VALIDATION', bad)
  }
})
