import t from 'tap'
import { bearer, buildTestApi, STRONG } from './helpers.ts'

t.test('password policy refuses weak passwords and says why (R15)', async (t) => {
  const { app } = await buildTestApi(t)
  const cases: Array<[string, RegExp]> = [
    ['short1!', /too short: use at least 10/],
    ['password123', /most commonly used/],
    ['qwertyuiop', /most commonly used/],
    ['my-kennel-Account-77', /product name "kennel"/],
    ['K3nn3l-Secure-Words', /product name/],
    ['marguerite.dubois-Lamp', /e-mail address/],
    ['aaaaaaaaaaaaaaa', /too easy to guess \(strength [0-2]\/4/],
    ['Password2024', /too easy to guess.*similar to a commonly used password/], ['jessica1987', /too easy to guess/],
  ]
  for (const [password, reason] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'marguerite.dubois@example.org', password } })
    t.equal(res.statusCode, 400, password)
    t.equal(res.json().error.code, 'KENNEL_ERR_WEAK_PASSWORD', password)
    t.match(res.json().error.message, reason, password)
  }
  const ok = await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'marguerite.dubois@example.org', password: STRONG } })
  t.equal(ok.statusCode, 201)
  const again = await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'Marguerite.Dubois@example.org', password: STRONG } })
  t.equal(again.statusCode, 409, 'e-mails are compared normalised')
})

t.test('the account is stored with argon2id and without the e-mail in clear (R12, R15)', async (t) => {
  const { app, pki } = await buildTestApi(t)
  await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'nadia@example.org', password: STRONG } })
  const [created] = await pki.store.readAll({ filter: { types: ['AccountCreated'] } })
  const raw = JSON.stringify(created)
  t.notMatch(raw, /nadia/, 'no e-mail in the event')
  t.notMatch(raw, new RegExp(STRONG), 'no password in the event')
  t.match((created!.data as { passwordHash: string }).passwordHash, /^\$argon2id\$/)
})

t.test('sessions: random token, stored only as a hash, expires, revoked on logout (R6)', async (t) => {
  let now = new Date('2030-01-01T00:00:00Z')
  const { app, pki } = await buildTestApi(t, { deps: { now: () => now } })
  await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'omar@example.org', password: STRONG } })
  const login = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'omar@example.org', password: STRONG } })
  t.equal(login.statusCode, 200)
  const { token, expiresAt } = login.json()
  t.match(token, /^kt_[A-Za-z0-9_-]{43}$/, '256 random bits')
  t.equal(expiresAt, '2030-01-01T12:00:00.000Z')
  const events = JSON.stringify(await pki.store.readAll())
  t.notOk(events.includes(token), 'the token is not in any event')
  const ok = await app.inject({ method: 'POST', url: '/v1/households', headers: bearer(token) })
  t.equal(ok.statusCode, 201)

  now = new Date('2030-01-01T12:00:01Z')
  const expired = await app.inject({ method: 'POST', url: '/v1/households', headers: bearer(token) })
  t.equal(expired.statusCode, 401)
  t.match(expired.json().error.message, /expired/)

  now = new Date('2030-01-01T13:00:00Z')
  const second = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'omar@example.org', password: STRONG } })).json().token
  const logout = await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: bearer(second) })
  t.equal(logout.statusCode, 204)
  const after = await app.inject({ method: 'POST', url: '/v1/households', headers: bearer(second) })
  t.equal(after.statusCode, 401, 'a logged-out token is refused')
  const types = (await pki.store.readAll({ filter: { streamPrefixes: ['account-'] } })).map((e) => e.type)
  t.same(types, ['AccountCreated', 'SessionStarted', 'SessionStarted', 'SessionEnded'])
})

t.test('a failed login does not reveal whether the e-mail exists', async (t) => {
  const { app, pki } = await buildTestApi(t)
  await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'pia@example.org', password: STRONG } })
  const wrong = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'pia@example.org', password: 'not-the-right-one' } })
  const unknown = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'nobody@example.org', password: 'not-the-right-one' } })
  t.equal(wrong.statusCode, 401)
  t.equal(unknown.statusCode, 401)
  t.same(wrong.json(), unknown.json(), 'same body')
  const failed = await pki.store.readAll({ filter: { types: ['LoginFailed'] } })
  t.same(failed.map((e) => [e.stream.replace(/-.*/, ''), (e.data as { reason: string }).reason]), [['account', 'wrong-password'], ['security', 'unknown-account']], 'both are events')
})

t.test('login brute force: the 6th attempt after 5 failures gets 429 with Retry-After (R6)', async (t) => {
  const { app, pki } = await buildTestApi(t)
  await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'quinn@example.org', password: STRONG } })
  for (let i = 1; i <= 5; i++) {
    const res = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'quinn@example.org', password: `wrong-guess-${i}` } })
    t.equal(res.statusCode, 401, `failure ${i}`)
  }
  const blocked = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'quinn@example.org', password: STRONG } })
  t.equal(blocked.statusCode, 429, 'even the right password is refused while blocked')
  t.equal(blocked.json().error.code, 'KENNEL_ERR_RATE_LIMITED')
  t.ok(Number(blocked.headers['retry-after']) > 0)
  const other = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'quinn@example.org', password: STRONG }, remoteAddress: '10.9.9.9' })
  t.equal(other.statusCode, 200, 'the block is per account and IP: the owner elsewhere still logs in')
  const limited = await pki.store.readAll({ filter: { types: ['RateLimitExceeded'] } })
  t.equal(limited.length, 1)
})

t.test('a success resets the consecutive-failure count', async (t) => {
  const { app } = await buildTestApi(t)
  await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'rosa@example.org', password: STRONG } })
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 4; i++) t.equal((await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'rosa@example.org', password: 'wrong-guess-xx' } })).statusCode, 401)
    t.equal((await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'rosa@example.org', password: STRONG } })).statusCode, 200)
  }
})

t.test('failures per IP per day are limited across accounts (R6)', async (t) => {
  const { app } = await buildTestApi(t, { env: { KENNEL_LOGIN_IP_DAILY_LIMIT: '3' } })
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: `u${i}@example.org`, password: 'wrong-guess-xx' } })).statusCode, 401)
  const res = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'u9@example.org', password: 'wrong-guess-xx' } })
  t.equal(res.statusCode, 429)
})
