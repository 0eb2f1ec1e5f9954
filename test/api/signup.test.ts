import { createHash } from 'node:crypto'
import t from 'tap'
import { EmailProtector } from '../../api/accounts/personal-data.ts'
import { findVerificationToken } from '../../api/accounts/tokens.ts'
import { KeyRing, loadMasterKey } from '../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../infra/keystore/files.ts'
import { buildTestApi, STRONG, type TestApi } from './helpers.ts'

// Sign-up does not tell who has an account (R15): the answer is the same for a new and a known
// address, the difference goes only to the mailbox, and a known account is not touched. An
// address is confirmed with the token from its mail, once, before it expires; logins wait for it.

const OTHER = 'amber-Lighthouse-97-drifting-Comet'
const signUp = (api: TestApi, email: string, password = STRONG) =>
  api.app.inject({ method: 'POST', url: '/v1/accounts', payload: { email, password } })
const verify = (api: TestApi, token: string | undefined) =>
  api.app.inject({ method: 'POST', url: '/v1/accounts/verify', payload: { token } })
const login = (api: TestApi, email: string, password = STRONG) =>
  api.app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password } })
const mailsTo = (api: TestApi, to: string) => api.outbox().filter((m) => m.headers.to === to)
/** what an observer of the answer sees, less the headers that differ between any two answers */
const observable = (res: { statusCode: number; headers: Record<string, unknown>; body: string }) => {
  const { date: _d, connection: _c, ...headers } = res.headers
  return { status: res.statusCode, headers, body: res.body }
}

t.test(
  'a new and a known address get the same answer; only the mailboxes differ, and the known account is untouched',
  async (t) => {
    const api = await buildTestApi(t)
    await api.signUp('known@example.org')
    const streamsOfKnown = await api.pki.store.readAll()
    const knownBefore = JSON.stringify(streamsOfKnown)
    const mailsBefore = api.outbox().length

    const known = await signUp(api, 'known@example.org', OTHER)
    const fresh = await signUp(api, 'fresh@example.org', OTHER)
    t.same(observable(known), observable(fresh), 'same status, headers and body')
    t.equal(fresh.statusCode, 202)
    t.same(fresh.json(), { status: 'verification-pending' })

    const after = await api.pki.store.readAll()
    t.equal(JSON.stringify(after.slice(0, streamsOfKnown.length)), knownBefore, 'the history before is unchanged')
    const added = after.slice(streamsOfKnown.length)
    const knownId = (streamsOfKnown.find((e) => e.type === 'AccountCreated')!.data as { accountId: string }).accountId
    t.notOk(
      added.some((e) => e.stream === `account-${knownId}` || JSON.stringify(e.data).includes(knownId)),
      'nothing was appended for the known account',
    )
    t.same(
      added.map((e) => e.type),
      ['EmailReserved', 'AccountCreated', 'VerificationRequested'],
      'the new address has an unconfirmed account',
    )
    t.equal((await login(api, 'known@example.org')).statusCode, 200, 'the known account keeps its password')
    t.equal((await login(api, 'known@example.org', OTHER)).statusCode, 401, 'the sign-up did not set another one')

    const mails = api.outbox().slice(mailsBefore)
    t.equal(mails.length, 2)
    const [toKnown] = mailsTo(api, 'known@example.org').slice(-1)
    const [toFresh] = mailsTo(api, 'fresh@example.org')
    t.match(toFresh!.headers, {
      from: api.pki.config.mailFrom,
      to: 'fresh@example.org',
      subject: 'Confirm your kennel account',
    })
    t.match(toKnown!.headers, {
      from: api.pki.config.mailFrom,
      to: 'known@example.org',
      subject: 'You already have a kennel account',
    })
    const token = findVerificationToken(toFresh!.text)
    t.ok(token, 'the new address gets a token')
    t.notMatch(toKnown!.text, /kv_/, 'the known one none')
    const requested = added.find((e) => e.type === 'VerificationRequested')!
    t.equal(
      (requested.data as { tokenHash: string }).tokenHash,
      createHash('sha256').update(token!).digest('hex'),
      'only its hash is kept',
    )
    t.notOk(JSON.stringify(after).includes(token!), 'the token is in no event')
  },
)

t.test('the token confirms the address once; logins before that are refused with their own code', async (t) => {
  const api = await buildTestApi(t)
  t.equal((await signUp(api, 'lena@example.org')).statusCode, 202)
  const before = await login(api, 'lena@example.org')
  t.equal(before.statusCode, 403)
  t.equal(before.json().error.code, 'KENNEL_ERR_ACCOUNT_UNVERIFIED')
  t.equal(
    (await login(api, 'lena@example.org', OTHER)).json().error.code,
    'KENNEL_ERR_LOGIN_FAILED',
    'a wrong password is still just wrong',
  )

  const token = findVerificationToken(mailsTo(api, 'lena@example.org')[0]!.text)!
  const forged = await verify(api, `kv_${'A'.repeat(43)}`)
  t.equal(forged.statusCode, 400)
  t.equal(forged.json().error.code, 'KENNEL_ERR_VERIFICATION_INVALID')
  t.equal((await verify(api, 'not-a-token')).json().error.code, 'KENNEL_ERR_VALIDATION')

  const first = await verify(api, token)
  t.equal(first.statusCode, 200)
  t.match(first.json(), { status: 'verified', accountId: /^[0-9a-f-]{36}$/ })
  const second = await verify(api, token)
  t.equal(second.statusCode, 409, 'the token works once')
  t.equal(second.json().error.code, 'KENNEL_ERR_VERIFICATION_USED')
  t.equal((await login(api, 'lena@example.org')).statusCode, 200, 'logins work once confirmed')

  const events = await api.pki.store.readStream(`account-${first.json().accountId}`)
  t.same(
    events.map((e) => [e.type, (e.data as { reason?: string }).reason]),
    [
      ['AccountCreated', undefined],
      ['VerificationRequested', undefined],
      ['LoginFailed', 'unverified'],
      ['LoginFailed', 'wrong-password'],
      ['AccountVerified', undefined],
      ['SessionStarted', undefined],
    ],
  )
  t.match(events[4]!.metadata, {
    actor: `account:${first.json().accountId}`,
    credential: `token:${(events[1]!.data as { verificationId: string }).verificationId}`,
  })
})

t.test('two uses of one token at once: exactly one confirms', async (t) => {
  const api = await buildTestApi(t)
  await signUp(api, 'twice@example.org')
  const token = findVerificationToken(mailsTo(api, 'twice@example.org')[0]!.text)!
  const answers = await Promise.all([verify(api, token), verify(api, token), verify(api, token)])
  t.same(answers.map((a) => a.statusCode).sort(), [200, 409, 409])
  t.equal((await api.pki.store.readAll({ filter: { types: ['AccountVerified'] } })).length, 1)
})

t.test(
  'a token expires; signing up again mails a new one, and only the newest confirms, with the password given with it',
  async (t) => {
    let now = new Date('2030-01-01T00:00:00Z')
    const api = await buildTestApi(t, { deps: { now: () => now } })
    // someone without the mailbox signs up first, with a password of their own
    await signUp(api, 'mia@example.org', OTHER)
    const squatter = findVerificationToken(mailsTo(api, 'mia@example.org')[0]!.text)!
    now = new Date('2030-01-02T00:00:00Z')
    const expired = await verify(api, squatter)
    t.equal(expired.statusCode, 410, 'after KENNEL_VERIFICATION_TTL_HOURS (24 h)')
    t.equal(expired.json().error.code, 'KENNEL_ERR_VERIFICATION_EXPIRED')

    // the owner signs up: same answer, a new token bound to the owner's password
    t.equal((await signUp(api, 'mia@example.org')).statusCode, 202)
    const mails = mailsTo(api, 'mia@example.org')
    t.equal(mails.length, 2)
    t.equal(mails[1]!.headers.subject, 'Confirm your kennel account')
    const owner = findVerificationToken(mails[1]!.text)!
    t.not(owner, squatter)
    t.equal((await api.pki.store.readAll({ filter: { types: ['AccountCreated'] } })).length, 1, 'still one account')

    now = new Date('2030-01-01T12:00:00Z')
    t.equal(
      (await verify(api, squatter)).json().error.code,
      'KENNEL_ERR_VERIFICATION_EXPIRED',
      'an older token is replaced by the newer one, expired or not',
    )
    t.equal((await verify(api, owner)).statusCode, 200)
    t.equal((await login(api, 'mia@example.org')).statusCode, 200, "the owner's password holds")
    t.equal((await login(api, 'mia@example.org', OTHER)).statusCode, 401, "the earlier sign-up's password does not")
  },
)

t.test('accounts created before sign-up confirmation existed log in as before', async (t) => {
  const api = await buildTestApi(t)
  const masterKey = loadMasterKey(api.pki.config)
  const emails = new EmailProtector(masterKey, new KeyRing(fileKeyStore(api.pki.config.dataDir), masterKey, 'person'))
  const argon2 = (await import('argon2')).default
  const accountId = '11111111-1111-4111-8111-111111111111'
  await api.pki.store.append(`account-${accountId}`, [
    {
      type: 'AccountCreated',
      data: {
        accountId,
        emailHash: emails.hash('old@example.org'),
        emailSealed: await emails.seal(accountId, 'old@example.org'),
        passwordHash: await argon2.hash(STRONG, { type: argon2.argon2id }),
        createdAt: '2029-01-01T00:00:00.000Z',
      },
    },
  ])
  await api.app.readModels.waitFor(await api.pki.store.headPosition())
  t.equal((await login(api, 'old@example.org')).statusCode, 200)
})

t.test('sign-up mails to one address are capped; the answer stays the same', async (t) => {
  const api = await buildTestApi(t, { env: { KENNEL_SIGNUP_MAILS_PER_HOUR: '2' } })
  const answers = []
  for (let i = 0; i < 5; i++) answers.push(observable(await signUp(api, 'flood@example.org')))
  for (const a of answers) t.same(a, answers[0])
  t.equal(mailsTo(api, 'flood@example.org').length, 2, 'two mails, then none')
  t.equal(
    (await api.pki.store.readAll({ filter: { types: ['VerificationRequested'] } })).length,
    2,
    'no token without a mail',
  )
  t.equal((await signUp(api, 'other@example.org')).statusCode, 202)
  t.equal(mailsTo(api, 'other@example.org').length, 1, 'the cap is per address')
})
