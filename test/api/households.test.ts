import t from 'tap'
import { PersonalData } from '../../api/accounts/personal-data.ts'
import { householdNameLabel } from '../../api/households/projection.ts'
import { KeyRing, loadMasterKey } from '../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../infra/keystore/files.ts'
import { bearer, buildTestApi } from './helpers.ts'

// A household's name is kept and shown to its members, but it is personal data: the event holds
// it sealed with the owner's person key (R12), so erasing the owner's key erases the name.

t.test('a household keeps the name it was created with; the event holds it only sealed', async (t) => {
  const api = await buildTestApi(t)
  const alice = await api.parent('alice@example.org')
  const name = 'The Dubois-Ångström family'
  const created = await api.app.inject({
    method: 'POST',
    url: '/v1/households',
    headers: bearer(alice.token),
    payload: { name: `  ${name} ` },
  })
  t.equal(created.statusCode, 201)
  t.equal(created.json().name, name, 'answered trimmed')
  const list = await api.app.inject({ method: 'GET', url: '/v1/households', headers: bearer(alice.token) })
  const mine = list.json().households.find((h: { householdId: string }) => h.householdId === created.json().householdId)
  t.same(mine, { householdId: created.json().householdId, name, deviceIds: [] })
  t.equal(
    list.json().households.find((h: { householdId: string }) => h.householdId === alice.householdId).name,
    null,
    'a household created without a name has none',
  )

  const events = await api.pki.store.readStream(`household-${created.json().householdId}`)
  t.same(
    events.map((e) => e.type),
    ['HouseholdCreated'],
  )
  t.match(events[0]!.data, { ownerAccountId: alice.accountId, nameSealed: /^[A-Za-z0-9+/]+=*$/ })
  const everything = JSON.stringify(await api.pki.store.readAll())
  t.notOk(everything.includes('Dubois') || everything.includes('Ångström'), 'the name is in no event in clear')

  const bob = await api.parent('bob@example.org')
  const theirs = await api.app.inject({ method: 'GET', url: '/v1/households', headers: bearer(bob.token) })
  t.notOk(theirs.body.includes('Dubois'), 'another parent never sees it')

  // a process that reads the history later (an export, a rebuild) opens it with the owner's key only
  const masterKey = loadMasterKey(api.pki.config)
  const persons = () => new KeyRing(fileKeyStore(api.pki.config.dataDir), masterKey, 'person')
  const sealed = (events[0]!.data as { nameSealed: string }).nameSealed
  const label = householdNameLabel(created.json().householdId)
  t.equal(await new PersonalData(persons()).open(alice.accountId, label, sealed), name)
  await t.rejects(new PersonalData(persons()).open(bob.accountId, label, sealed), "not with another person's key")
  await t.rejects(
    new PersonalData(persons()).open(alice.accountId, householdNameLabel(alice.householdId), sealed),
    "not as another household's name",
  )
  await persons().shred(alice.accountId)
  t.equal(
    await new PersonalData(persons()).open(alice.accountId, label, sealed),
    undefined,
    "shredding the owner's key erases the name (R12)",
  )
})

t.test('unknown fields and unprintable names are refused, nothing is created', async (t) => {
  const api = await buildTestApi(t)
  const alice = await api.parent('alice@example.org')
  const before = await api.pki.store.headPosition()
  for (const payload of [
    { name: 'Home', colour: 'blue' },
    { title: 'Home' },
    { name: '' },
    { name: '   ' },
    { name: 'x'.repeat(101) },
    { name: 'Home\u0000' },
    { name: 'a\nb' },
    { name: 42 },
  ]) {
    const res = await api.app.inject({ method: 'POST', url: '/v1/households', headers: bearer(alice.token), payload })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.equal(res.json().error.code, 'KENNEL_ERR_VALIDATION', JSON.stringify(payload))
  }
  t.equal(await api.pki.store.headPosition(), before, 'no event was appended')
})
