import t from 'tap'
import { PersonalData } from '../../api/accounts/personal-data.ts'
import { KeyRing, loadMasterKey } from '../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../infra/keystore/files.ts'
import { rules } from '../../projections/monitor/rules.ts'
import { bearer, buildTestApi, STRONG } from './helpers.ts'

// What a person does through the API carries where they did it from: personal data (R12). The
// events hold that address only sealed with the person's key (docs/EVENTS.md, "Personal data in
// events"), so erasing the person erases it, and the monitor still counts their addresses.

const HOME = '198.51.100.7'

t.test("a parent's own actions hold their source address only sealed with their key", async (t) => {
  const api = await buildTestApi(t)
  const from = { remoteAddress: HOME }
  await api.app.inject({
    method: 'POST',
    url: '/v1/accounts',
    payload: { email: 'carla@example.org', password: STRONG },
    ...from,
  })
  const { findVerificationToken } = await import('../../api/accounts/tokens.ts')
  const token = findVerificationToken(api.outbox().at(-1)!.text)!
  const accountId = (
    await api.app.inject({ method: 'POST', url: '/v1/accounts/verify', payload: { token }, ...from })
  ).json().accountId as string
  const session = (
    await api.app.inject({
      method: 'POST',
      url: '/v1/sessions',
      payload: { email: 'carla@example.org', password: STRONG },
      ...from,
    })
  ).json().token as string
  const householdId = (
    await api.app.inject({
      method: 'POST',
      url: '/v1/households',
      headers: bearer(session),
      payload: { name: 'Home' },
      ...from,
    })
  ).json().householdId as string
  const toy = await api.pki.enroll('toy-carla')
  t.equal(
    (
      await api.app.inject({
        method: 'POST',
        url: `/v1/households/${householdId}/devices`,
        headers: bearer(session),
        payload: { claimCode: toy.claimCode },
        ...from,
      })
    ).statusCode,
    201,
  )
  t.equal(
    (
      await api.app.inject({
        method: 'POST',
        url: `/v1/households/${householdId}/recordings`,
        headers: bearer(session),
        payload: { deviceId: 'toy-carla', contentType: 'audio/ogg', bytes: 5 },
        ...from,
      })
    ).statusCode,
    201,
  )
  t.equal(
    (await api.app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: bearer(session), ...from }))
      .statusCode,
    204,
  )

  const events = await api.pki.store.readAll()
  t.notOk(JSON.stringify(events).includes(HOME), 'the address is in no event in clear')
  const hers = events.filter((e) =>
    [
      'AccountCreated',
      'VerificationRequested',
      'AccountVerified',
      'SessionStarted',
      'HouseholdCreated',
      'DeviceClaimed',
      'RecordingCreated',
      'UploadUrlIssued',
      'SessionEnded',
      'EmailReserved',
    ].includes(e.type),
  )
  t.equal(hers.length, 10, 'every one of her actions')
  for (const e of hers)
    t.match(
      e.metadata,
      { sourceIpSealed: /^[A-Za-z0-9+/]+=*$/, sourceIpTag: /^[A-Za-z0-9_-]{22}$/ },
      `${e.type}: sealed address and tag`,
    )
  t.equal(new Set(hers.map((e) => e.metadata.sourceIpTag)).size, 1, 'one address, one tag')

  const persons = () =>
    new PersonalData(new KeyRing(fileKeyStore(api.pki.config.dataDir), loadMasterKey(api.pki.config), 'person'))
  t.equal(
    await persons().openSource(accountId, hers[0]!.metadata.sourceIpSealed as string),
    HOME,
    'her key opens it (the export shows it)',
  )
  await persons().shred(accountId)
  t.equal(
    await persons().openSource(accountId, hers[0]!.metadata.sourceIpSealed as string),
    undefined,
    'her erased key no longer does',
  )
})

t.test('the monitor still tells the addresses an account logs in from apart by their tags (R11)', async (t) => {
  const api = await buildTestApi(t)
  await api.signUp('dan@example.org')
  for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.1', '192.0.2.3']) {
    t.equal(
      (
        await api.app.inject({
          method: 'POST',
          url: '/v1/sessions',
          payload: { email: 'dan@example.org', password: STRONG },
          remoteAddress: ip,
        })
      ).statusCode,
      200,
    )
  }
  const rule = rules.find((r) => r.name === 'login-ips-per-account')!
  const observed = (await api.pki.store.readAll({ filter: { types: ['SessionStarted'] } })).map((e) => rule.observe(e))
  t.equal(observed.length, 4)
  t.equal(new Set(observed.map((o) => o?.key)).size, 1, 'counted under the account')
  t.equal(new Set(observed.map((o) => o?.distinct)).size, 3, 'three distinct addresses')
})
