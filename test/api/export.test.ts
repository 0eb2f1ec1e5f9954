import t from 'tap'
import { exportAccountByOps, grantRole } from '../../bin/commands/account.ts'
import { bearer, buildTestApi, STRONG } from './helpers.ts'

// The export (R12): a parent gets everything kennel holds about them and their household, with
// what the events hold sealed opened by their key, and the export is itself an event.

const HOME = '203.0.113.9'

t.test(
  'a parent exports their account, household, toys, recordings with download URLs and the events that name them',
  async (t) => {
    const api = await buildTestApi(t)
    const alice = await api.parent('alice@example.org')
    const named = (
      await api.app.inject({
        method: 'POST',
        url: '/v1/households',
        headers: bearer(alice.token),
        payload: { name: 'The Lindqvists' },
        remoteAddress: HOME,
      })
    ).json().householdId as string
    await api.pairedToy(alice.token, named, 'toy-alice')
    const upload = (
      await api.app.inject({
        method: 'POST',
        url: `/v1/households/${named}/recordings`,
        headers: bearer(alice.token),
        payload: { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: 5 },
      })
    ).json()
    const u = new URL(upload.url)
    await api.app.inject({
      method: 'PUT',
      url: u.pathname + u.search,
      headers: upload.headers,
      payload: Buffer.from('hello'),
    })
    await api.app.inject({
      method: 'POST',
      url: `/v1/recordings/${upload.recordingId}/complete`,
      headers: bearer(alice.token),
    })
    const bob = await api.parent('bob@example.org')

    t.equal(
      (await api.app.inject({ method: 'POST', url: '/v1/accounts/me/export', payload: { password: STRONG } }))
        .statusCode,
      401,
      'no token, no export',
    )
    const res = await api.app.inject({
      method: 'POST',
      url: '/v1/accounts/me/export',
      headers: bearer(alice.token),
      payload: { password: STRONG },
    })
    t.equal(res.statusCode, 200, res.body)
    t.match(res.headers['content-disposition'], /attachment/)
    const doc = res.json()
    t.match(doc, {
      format: 'kennel-account-export/v1',
      account: { accountId: alice.accountId, email: 'alice@example.org', verified: true },
    })
    const household = doc.households.find((h: { householdId: string }) => h.householdId === named)
    t.match(household, {
      name: 'The Lindqvists',
      role: 'owner',
      toys: [{ deviceId: 'toy-alice', status: 'active' }],
      recordings: [
        { recordingId: upload.recordingId, status: 'stored', downloadUrl: /^https:\/\/.+\/v1\/blobs\/rec-/ },
      ],
    })
    const got = new URL(household.recordings[0].downloadUrl)
    t.equal(
      (await api.app.inject({ method: 'GET', url: got.pathname + got.search })).body,
      'hello',
      'the download URL works',
    )
    const types = doc.events.map((e: { type: string }) => e.type)
    for (const type of [
      'AccountCreated',
      'SessionStarted',
      'HouseholdCreated',
      'DeviceClaimed',
      'RecordingCreated',
      'RecordingStored',
      'EmailReserved',
    ])
      t.ok(types.includes(type), `the events include ${type}`)
    const createdHousehold = doc.events.find(
      (e: { type: string; data: { householdId: string } }) =>
        e.type === 'HouseholdCreated' && e.data.householdId === named,
    )
    t.match(
      createdHousehold,
      { data: { name: 'The Lindqvists' }, metadata: { sourceIp: HOME } },
      'sealed values opened with her key',
    )
    t.notOk(
      res.body.includes('passwordHash') || res.body.includes('tokenHash') || res.body.includes('Sealed'),
      'no credential hash, nothing left sealed',
    )
    t.notOk(res.body.includes(bob.accountId) || res.body.includes('bob@example.org'), 'nothing of another family')
    const recorded = (await api.pki.store.readStream(`account-${alice.accountId}`)).at(-1)!
    t.match(
      recorded,
      {
        type: 'AccountExported',
        data: { accountId: alice.accountId, households: 2, recordings: 1, events: doc.events.length },
        metadata: { actor: `account:${alice.accountId}` },
      },
      'the export is an event',
    )

    const byOps = await exportAccountByOps(
      { config: api.pki.config, store: api.pki.store, actor: 'cli:ops' },
      'alice@example.org',
    )
    t.match(byOps, { account: { email: 'alice@example.org' } })
    t.notOk(
      JSON.stringify(byOps).includes('downloadUrl'),
      'the CLI leaves URLs out: they would expire before the file arrives',
    )
    t.match((await api.pki.store.readStream(`account-${alice.accountId}`)).at(-1), {
      type: 'AccountExported',
      metadata: { actor: 'cli:ops' },
    })
    await t.rejects(
      exportAccountByOps({ config: api.pki.config, store: api.pki.store, actor: 'cli:ops' }, 'nobody@example.org'),
      { code: 'KENNEL_ERR_NOT_FOUND' },
    )
  },
)

t.test(
  'a session past its fresh-login window exports nothing: the password is given again, under the login limits',
  async (t) => {
    // 0: no session is fresh enough for GET, whatever its age (the same check as one older than the window)
    const api = await buildTestApi(t, { env: { KENNEL_EXPORT_FRESH_LOGIN_SECONDS: '0' } })
    const alice = await api.parent('alice@example.org')
    const before = await api.pki.store.headPosition()
    const since = async () => (await api.pki.store.readAll({ after: before })).map((e) => e.type)
    const refused = async (
      res: { statusCode: number; body: string; json(): { error: { code: string } } },
      status: number,
      code: string,
      what: string,
    ) => {
      t.equal(res.statusCode, status, `${what}: ${status}`)
      t.equal(res.json().error.code, code, `${what}: ${code}`)
      t.notOk(
        res.body.includes('alice@example.org') || res.body.includes(alice.householdId),
        `${what}: nothing of hers in the answer`,
      )
    }
    await refused(
      await api.app.inject({ method: 'GET', url: '/v1/accounts/me/export', headers: bearer(alice.token) }),
      403,
      'KENNEL_ERR_REAUTH_REQUIRED',
      'GET with a token whose login is not fresh',
    )
    await refused(
      await api.app.inject({
        method: 'POST',
        url: '/v1/accounts/me/export',
        headers: bearer(alice.token),
        payload: {},
      }),
      403,
      'KENNEL_ERR_REAUTH_REQUIRED',
      'POST without the password',
    )
    await refused(
      await api.app.inject({ method: 'POST', url: '/v1/accounts/me/export', headers: bearer(alice.token) }),
      403,
      'KENNEL_ERR_REAUTH_REQUIRED',
      'POST without a body',
    )
    t.same(await since(), [], 'nothing was exported, nothing recorded as exported')
    await refused(
      await api.app.inject({
        method: 'POST',
        url: '/v1/accounts/me/export',
        headers: bearer(alice.token),
        payload: { password: 'not-the-password-at-all' },
      }),
      401,
      'KENNEL_ERR_LOGIN_FAILED',
      'a wrong password',
    )
    t.same(
      await since(),
      ['LoginFailed'],
      'a wrong password is a failed login (it counts towards the waits); no AccountExported',
    )
    const ok = await api.app.inject({
      method: 'POST',
      url: '/v1/accounts/me/export',
      headers: bearer(alice.token),
      payload: { password: STRONG },
    })
    t.equal(ok.statusCode, 200, 'the right password exports')
    t.equal(ok.json().account.email, 'alice@example.org')
    t.same(await since(), ['LoginFailed', 'AccountExported'], 'and records it')
  },
)

t.test(
  "the export opens the family's own sealed addresses and leaves out another person's (ops who revoked their toy)",
  async (t) => {
    const api = await buildTestApi(t)
    const alice = await api.parent('alice@example.org')
    await api.pairedToy(alice.token, alice.householdId, 'toy-alice')
    await api.signUp('ops@example.org')
    await grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'ops@example.org', 'ops')
    const ops = (
      await api.app.inject({
        method: 'POST',
        url: '/v1/sessions',
        payload: { email: 'ops@example.org', password: STRONG },
      })
    ).json().token as string
    const OPS_DESK = '192.0.2.77'
    const revoked = await api.app.inject({
      method: 'POST',
      url: '/v1/ops/devices/toy-alice/revoke',
      headers: bearer(ops),
      payload: { reason: 'reported lost' },
      remoteAddress: OPS_DESK,
    })
    t.equal(revoked.statusCode, 200, 'ops revoke her toy')
    const res = await api.app.inject({
      method: 'POST',
      url: '/v1/accounts/me/export',
      headers: bearer(alice.token),
      payload: { password: STRONG },
    })
    t.equal(res.statusCode, 200, 'her export still works')
    const event = res.json().events.find((e: { type: string }) => e.type === 'DeviceRevoked')
    t.match(event, { data: { deviceId: 'toy-alice', reason: 'reported lost' } }, 'the revocation is in it')
    t.notOk('sourceIp' in event.metadata, "without the ops person's address, which is theirs")
    t.notOk(res.body.includes(OPS_DESK) || res.body.includes('Sealed'), 'nowhere in the document, sealed or not')
  },
)

t.test('GET answers a session within its fresh-login window (the login was the password), not after it', async (t) => {
  // the API's clock is the real one until moved past the window: a login is recorded at the
  // store's (real) time, so the moved clock is at least 301 s after it whatever the machine's load
  let clock: number | undefined
  const api = await buildTestApi(t, { deps: { now: () => new Date(clock ?? Date.now()) } })
  const alice = await api.parent('alice@example.org')
  const exported = async () =>
    (await api.pki.store.readStream(`account-${alice.accountId}`)).filter((e) => e.type === 'AccountExported').length
  const fresh = await api.app.inject({ method: 'GET', url: '/v1/accounts/me/export', headers: bearer(alice.token) })
  t.equal(fresh.statusCode, 200, 'a login of moments ago exports with GET')
  t.equal(fresh.json().account.email, 'alice@example.org')
  t.equal(fresh.headers['cache-control'], 'no-store')
  t.equal(await exported(), 1, 'recorded as AccountExported')
  clock = Date.now() + 301_000
  const stale = await api.app.inject({ method: 'GET', url: '/v1/accounts/me/export', headers: bearer(alice.token) })
  t.equal(stale.statusCode, 403, 'the same session 301 s after its login: refused')
  t.equal(stale.json().error.code, 'KENNEL_ERR_REAUTH_REQUIRED')
  t.match(stale.json().error.message, /log in again.*POST \/v1\/accounts\/me\/export/)
  t.notOk(stale.body.includes('alice@example.org'), 'nothing of hers in the answer')
  t.equal(await exported(), 1, 'and nothing recorded as exported')
})
