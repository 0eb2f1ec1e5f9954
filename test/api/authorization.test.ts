import { createHash } from 'node:crypto'
import t, { type Test } from 'tap'
import { grantRole } from '../../bin/commands/account.ts'
import { bearer, buildTestApi, STRONG } from './helpers.ts'

// The authorization matrix as attacks (R4, R5, R13). Every refusal is checked for its status and
// for the absence of any identifier of the victim household in the answer.

async function world(t: Test) {
  const start = Date.now()
  let now = new Date(start)
  const api = await buildTestApi(t, { deps: { now: () => now } })
  const alice = await api.parent('alice@example.org')
  const bob = await api.parent('bob@example.org')
  await api.pairedToy(alice.token, alice.householdId, 'toy-alice')
  await api.pairedToy(bob.token, bob.householdId, 'toy-bob')
  const created = await api.app.inject({
    method: 'POST',
    url: `/v1/households/${alice.householdId}/recordings`,
    headers: bearer(alice.token),
    payload: { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: 5 },
  })
  const upload = created.json()
  const u = new URL(upload.url)
  const put = await api.app.inject({
    method: 'PUT',
    url: u.pathname + u.search,
    headers: upload.headers,
    payload: Buffer.from('hello'),
  })
  if (put.statusCode !== 204) throw new Error(`upload ${put.statusCode} ${put.body}`)
  await api.app.inject({
    method: 'POST',
    url: `/v1/recordings/${upload.recordingId}/complete`,
    headers: bearer(alice.token),
  })
  const download = (
    await api.app.inject({
      method: 'GET',
      url: `/v1/recordings/${upload.recordingId}/download-url`,
      headers: bearer(alice.token),
    })
  ).json()
  const secrets = [alice.householdId, alice.accountId, 'toy-alice', upload.recordingId]
  return {
    api,
    alice,
    bob,
    upload,
    download,
    secrets,
    advance: (seconds: number) => (now = new Date(start + seconds * 1000)),
  }
}

function leaksNothing(t: Test, body: string, secrets: string[], what: string): void {
  for (const s of secrets) t.notOk(body.includes(s), `${what}: the answer does not contain ${s}`)
}

t.test('the legitimate path works end to end (the baseline of every attack below)', async (t) => {
  const { api, alice, upload, download } = await world(t)
  const list = await api.app.inject({
    method: 'GET',
    url: `/v1/households/${alice.householdId}/recordings`,
    headers: bearer(alice.token),
  })
  t.equal(list.json().recordings[0].status, 'stored')
  t.notOk(list.body.includes('rec-'), 'object keys are never shown')
  const u = new URL(download.url)
  const got = await api.app.inject({ method: 'GET', url: u.pathname + u.search })
  t.equal(got.statusCode, 200)
  t.equal(got.body, 'hello')
  const sha256 = createHash('sha256').update('hello').digest('hex')
  t.same(
    api.notifications,
    [
      {
        deviceId: 'toy-alice',
        subtopic: 'recordings',
        payload: { recordingId: upload.recordingId, contentType: 'audio/ogg', bytes: 5, sha256 },
      },
    ],
    'the toy is told, with the SHA-256 to check',
  )
  t.equal(download.sha256, sha256, 'the download URL comes with the SHA-256 recorded at completion')
  const issued = await api.pki.store.readStream(`recording-${upload.recordingId}`)
  t.same(
    issued.map((e) => e.type),
    [
      'RecordingCreated',
      'UploadUrlIssued',
      'RecordingUploaded',
      'RecordingStored',
      'DownloadUrlIssued',
      'RecordingDownloaded',
    ],
    'the upload URL was issued and used, the download URL was issued, then used (R16)',
  )
  t.same(issued[4]!.metadata.actor, `account:${alice.accountId}`)
  t.ok((issued[4]!.data as { until: string }).until)
})

t.test('parent B attacks household A', async (t) => {
  const { api, alice, bob, upload, secrets } = await world(t)
  const h = bearer(bob.token)
  const attacks: Array<[string, string, string, unknown, number]> = [
    ["list A's toys", 'GET', `/v1/households/${alice.householdId}/devices`, undefined, 404],
    ["list A's recordings", 'GET', `/v1/households/${alice.householdId}/recordings`, undefined, 404],
    [
      "send a message to A's toy via A's household",
      'POST',
      `/v1/households/${alice.householdId}/recordings`,
      { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: 5 },
      404,
    ],
    [
      "send a message to A's toy via B's own household",
      'POST',
      `/v1/households/${bob.householdId}/recordings`,
      { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: 5 },
      404,
    ],
    [
      "pair a toy into A's household",
      'POST',
      `/v1/households/${alice.householdId}/devices`,
      { claimCode: 'toy-x.abcdefabcdef' },
      404,
    ],
    [
      "get a download URL for A's recording",
      'GET',
      `/v1/recordings/${upload.recordingId}/download-url`,
      undefined,
      404,
    ],
    ["complete A's recording", 'POST', `/v1/recordings/${upload.recordingId}/complete`, undefined, 404],
  ]
  for (const [what, method, url, payload, status] of attacks) {
    const res = await api.app.inject({
      method: method as 'GET',
      url,
      headers: h,
      ...(payload ? { payload: payload as object } : {}),
    })
    t.equal(res.statusCode, status, what)
    t.equal(res.json().error.code, 'KENNEL_ERR_NOT_FOUND', what)
    leaksNothing(
      t,
      res.body.replaceAll(alice.householdId, '').replaceAll(upload.recordingId, '') + JSON.stringify(res.headers),
      secrets,
      what,
    )
  }
  const own = await api.app.inject({ method: 'GET', url: '/v1/households', headers: h })
  leaksNothing(t, own.body, secrets, "B's own household list")
})

t.test('presigned URLs are bound to one object, one method and an expiry (R5)', async (t) => {
  const { api, upload, download, advance } = await world(t)
  const d = new URL(download.url)
  const other = `rec-${'a'.repeat(40)}`
  const tamperedSig = d.search.replace(/sig=([^&])/, (_m, c: string) => `sig=${c === 'A' ? 'B' : 'A'}`)
  const cases: Array<[string, string, string, number, string]> = [
    [
      'the GET URL with another object key',
      'GET',
      d.pathname.replace(/rec-[0-9a-f]+/, other) + d.search,
      403,
      'KENNEL_ERR_URL_SIGNATURE',
    ],
    ['a tampered signature', 'GET', d.pathname + tamperedSig, 403, 'KENNEL_ERR_URL_SIGNATURE'],
    [
      'an extended expiry',
      'GET',
      d.pathname + d.search.replace(/expires=(\d+)/, (_m, e: string) => `expires=${Number(e) + 3600}`),
      403,
      'KENNEL_ERR_URL_SIGNATURE',
    ],
    ['the GET URL used to PUT', 'PUT', d.pathname + d.search, 403, 'KENNEL_ERR_URL_SIGNATURE'],
  ]
  for (const [what, method, url, status, code] of cases) {
    const res = await api.app.inject({
      method: method as 'GET',
      url,
      ...(method === 'PUT' ? { headers: { 'content-type': 'audio/ogg' }, payload: Buffer.from('evil!') } : {}),
    })
    t.equal(res.statusCode, status, what)
    t.equal(res.json().error.code, code, what)
    t.notOk(res.body.includes('hello'), `${what}: no recording bytes`)
  }
  const u = new URL(upload.url)
  const replay = await api.app.inject({
    method: 'PUT',
    url: u.pathname + u.search,
    headers: { 'content-type': 'audio/ogg' },
    payload: Buffer.from('evil!!'),
  })
  t.equal(replay.statusCode, 409, 'the upload URL accepts only the declared size')
  advance(301)
  const late = await api.app.inject({ method: 'GET', url: d.pathname + d.search })
  t.equal(late.statusCode, 403, 'a replay after expiry is refused')
  t.equal(late.json().error.code, 'KENNEL_ERR_URL_EXPIRED')
  const lateUpload = await api.app.inject({
    method: 'PUT',
    url: u.pathname + u.search,
    headers: { 'content-type': 'audio/ogg' },
    payload: Buffer.from('evil!'),
  })
  t.equal(lateUpload.statusCode, 403)
})

t.test('a parent on ops and auditor routes is refused', async (t) => {
  const { api, alice } = await world(t)
  for (const [method, url, payload] of [
    ['POST', '/v1/ops/devices/toy-bob/revoke', { reason: 'because' }],
    ['GET', '/v1/ops/devices', undefined],
    ['GET', '/v1/ops/alerts', undefined],
    ['GET', '/v1/audit/events', undefined],
    ['GET', '/v1/audit/verify', undefined],
    [
      'POST',
      '/v1/audit/breach-reports',
      { credential: 'device:toy-bob', since: '2030-01-01T00:00:00Z', until: '2030-12-31T00:00:00Z' },
    ],
  ] as const) {
    const res = await api.app.inject({ method, url, headers: bearer(alice.token), ...(payload ? { payload } : {}) })
    t.equal(res.statusCode, 403, `${method} ${url}`)
    t.equal(res.json().error.code, 'KENNEL_ERR_FORBIDDEN')
    t.notOk(res.body.includes('toy-bob') && url.startsWith('/v1/ops/devices') && method === 'GET', 'no device list')
  }
  const devices = await api.pki.store.readAll({ filter: { types: ['DeviceRevoked'] } })
  t.equal(devices.length, 0, 'nothing was revoked')
})

t.test('ops and auditors: roles are granted by the CLI and their reads are events', async (t) => {
  const { api, bob } = await world(t)
  await api.signUp('ops@example.org')
  await api.signUp('audit@example.org')
  t.same(
    (await grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'ops@example.org', 'ops'))
      .granted,
    true,
  )
  await grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'audit@example.org', 'auditor')
  await t.rejects(
    grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'audit@example.org', 'root'),
    { code: 'KENNEL_ERR_ROLE_INVALID' },
  )
  await api.app.inject({ method: 'GET', url: '/healthz' })
  const login = async (email: string) =>
    (await api.app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password: STRONG } })).json()
      .token as string
  const ops = await login('ops@example.org')
  const auditor = await login('audit@example.org')
  const list = await api.app.inject({ method: 'GET', url: '/v1/ops/devices', headers: bearer(ops) })
  t.equal(list.statusCode, 200)
  t.same(
    list
      .json()
      .devices.map((d: { deviceId: string }) => d.deviceId)
      .sort(),
    ['toy-alice', 'toy-bob'],
  )
  const auditorOnOps = await api.app.inject({ method: 'GET', url: '/v1/ops/devices', headers: bearer(auditor) })
  t.equal(auditorOnOps.statusCode, 403, 'roles are separate')
  const revoke = await api.app.inject({
    method: 'POST',
    url: '/v1/ops/devices/toy-bob/revoke',
    headers: bearer(ops),
    payload: { reason: 'stolen' },
  })
  t.equal(revoke.statusCode, 200)
  const send = await api.app.inject({
    method: 'POST',
    url: `/v1/households/${bob.householdId}/recordings`,
    headers: bearer(bob.token),
    payload: { deviceId: 'toy-bob', contentType: 'audio/ogg', bytes: 5 },
  })
  t.equal(send.statusCode, 403, 'no URLs for a revoked toy')
  await api.pki.store.append('alerts', [
    { type: 'SecurityAlertRaised', data: { rule: 'test-rule', key: 'k', severity: 'high', summary: 'a test alert' } },
  ])
  const raised = (await api.pki.store.readStream('alerts')).at(-1)!
  const alerts = await api.app.inject({ method: 'GET', url: '/v1/ops/alerts', headers: bearer(ops) })
  t.equal(alerts.statusCode, 200)
  t.match(
    alerts.json().alerts[0],
    { id: raised.id, position: raised.position, type: 'SecurityAlertRaised', data: { rule: 'test-rule' } },
    "alerts carry their event id (the webhook body's id, AlertDeliveryFailed.alertId)",
  )
  const page = await api.app.inject({
    method: 'GET',
    url: '/v1/audit/events?from=0&limit=3&stream=account-',
    headers: bearer(auditor),
  })
  t.equal(page.statusCode, 200)
  t.equal(page.json().events.length, 3)
  const next = await api.app.inject({
    method: 'GET',
    url: `/v1/audit/events?from=${page.json().next}&limit=1000`,
    headers: bearer(auditor),
  })
  t.ok(
    next.json().events.every((e: { position: number }) => e.position > page.json().next),
    'paged by position',
  )
  const revoked = (await api.pki.store.readAll({ filter: { types: ['DeviceRevoked'] } }))[0]!
  t.match(revoked.metadata.actor, /^account:/)
  const reads = await api.pki.store.readAll({ filter: { types: ['PrivilegedRouteUsed', 'RoleGranted'] } })
  t.same(
    reads.map((e) => e.type),
    [
      'RoleGranted',
      'RoleGranted',
      'PrivilegedRouteUsed',
      'PrivilegedRouteUsed',
      'PrivilegedRouteUsed',
      'PrivilegedRouteUsed',
    ],
  )
  t.equal(reads[0]!.metadata.actor, 'cli:test')
})

t.test('an expired or forged token gets 401 and nothing else', async (t) => {
  const { api, alice, secrets, advance } = await world(t)
  for (const token of [`kt_${'A'.repeat(43)}`, 'garbage', `${alice.token}x`]) {
    const res = await api.app.inject({
      method: 'GET',
      url: `/v1/households/${alice.householdId}/devices`,
      headers: bearer(token),
    })
    t.equal(res.statusCode, 401)
    leaksNothing(t, res.body, secrets, 'forged token')
  }
  advance(12 * 3600 + 1)
  const res = await api.app.inject({
    method: 'GET',
    url: `/v1/households/${alice.householdId}/recordings`,
    headers: bearer(alice.token),
  })
  t.equal(res.statusCode, 401)
  t.match(res.json().error.message, /expired/)
  leaksNothing(t, res.body, secrets, 'expired token')
})

t.test('ids with path and SQL tricks are refused by validation', async (t) => {
  const { api, alice, bob, secrets } = await world(t)
  const tricks = [
    `/v1/households/..%2F..%2Fetc%2Fpasswd/devices`,
    `/v1/households/${alice.householdId}%00/devices`,
    `/v1/households/${alice.householdId}'%20OR%20'1'='1/recordings`,
    `/v1/recordings/1'%3B%20DROP%20TABLE%20events%3B--/download-url`,
    `/v1/recordings/${'%2e%2e%2f'.repeat(10)}/download-url`,
    `/v1/households/${alice.householdId.toUpperCase()}/devices`,
    `/v1/ops/devices/..%2F..%2Ftoy-alice/revoke`,
    `/v1/blobs/..%2Fkeys%2F${alice.householdId}.key?h=x&ct=&len=0&expires=9999999999&sig=${'A'.repeat(43)}`,
  ]
  for (const url of tricks) {
    const res = await api.app.inject({
      method: url.includes('revoke') ? 'POST' : 'GET',
      url,
      headers: bearer(bob.token),
      ...(url.includes('revoke') ? { payload: { reason: 'xxxx' } } : {}),
    })
    t.ok([400, 403, 404].includes(res.statusCode), `${url} → ${res.statusCode}`)
    t.match(res.json().error.code, /^KENNEL_ERR_/)
    leaksNothing(
      t,
      res.body.replaceAll(alice.householdId, '').replaceAll(alice.householdId.toUpperCase(), ''),
      secrets,
      url,
    )
  }
  const body = await api.app.inject({
    method: 'POST',
    url: `/v1/households/${bob.householdId}/recordings`,
    headers: bearer(bob.token),
    payload: { deviceId: "toy-bob' OR 1=1 --", contentType: 'audio/ogg', bytes: 5 },
  })
  t.equal(body.statusCode, 400)
  const type = await api.app.inject({
    method: 'POST',
    url: `/v1/households/${bob.householdId}/recordings`,
    headers: bearer(bob.token),
    payload: { deviceId: 'toy-bob', contentType: 'text/html', bytes: 5 },
  })
  t.equal(type.statusCode, 400, 'only audio content types')
})
