import t from 'tap'
import { exportAccountByOps } from '../../bin/commands/account.ts'
import { bearer, buildTestApi } from './helpers.ts'

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
      (await api.app.inject({ method: 'GET', url: '/v1/accounts/me/export' })).statusCode,
      401,
      'no token, no export',
    )
    const res = await api.app.inject({ method: 'GET', url: '/v1/accounts/me/export', headers: bearer(alice.token) })
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
