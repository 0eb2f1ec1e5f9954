import t from 'tap'
import { RESERVATION_TIMEOUT_MS, reservationHolds } from '../../api/accounts/email-reservation.ts'
import { EmailProtector } from '../../api/accounts/personal-data.ts'
import { KeyRing, loadMasterKey } from '../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../infra/keystore/files.ts'
import { rateLimitExceededData } from '../../infra/net/events.ts'
import { createMonitorProjection } from '../../projections/monitor/projection.ts'
import { OUTBOX, type OutboxEntry } from '../../projections/outbox.ts'
import { MemoryDocuments } from '../../projections/projection.ts'
import { bearer, buildTestApi, STRONG } from './helpers.ts'

t.test('password policy refuses weak passwords and says why (R15)', async (t) => {
  const { app, pki } = await buildTestApi(t)
  const cases: Array<[string, RegExp]> = [
    ['short1!', /too short: use at least 10/],
    ['password123', /most commonly used/],
    ['qwertyuiop', /most commonly used/],
    ['my-kennel-Account-77', /product name "kennel"/],
    ['K3nn3l-Secure-Words', /product name/],
    ['marguerite.dubois-Lamp', /e-mail address/],
    ['aaaaaaaaaaaaaaa', /too easy to guess \(strength [0-2]\/4/],
    ['Password2024', /too easy to guess.*similar to a commonly used password/],
    ['jessica1987', /too easy to guess/],
  ]
  for (const [password, reason] of cases) {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/accounts',
      payload: { email: 'marguerite.dubois@example.org', password },
    })
    t.equal(res.statusCode, 400, password)
    t.equal(res.json().error.code, 'KENNEL_ERR_WEAK_PASSWORD', password)
    t.match(res.json().error.message, reason, password)
  }
  const ok = await app.inject({
    method: 'POST',
    url: '/v1/accounts',
    payload: { email: 'marguerite.dubois@example.org', password: STRONG },
  })
  t.equal(ok.statusCode, 202)
  const again = await app.inject({
    method: 'POST',
    url: '/v1/accounts',
    payload: { email: 'Marguerite.Dubois@example.org', password: STRONG },
  })
  t.equal(again.statusCode, 202)
  t.equal(
    (await pki.store.readAll({ filter: { types: ['AccountCreated'] } })).length,
    1,
    'e-mails are compared normalised',
  )
})

t.test('the account is stored with argon2id and without the e-mail in clear (R12, R15)', async (t) => {
  const { app, pki } = await buildTestApi(t)
  await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'nadia@example.org', password: STRONG } })
  const [created, requested] = await pki.store.readAll({ filter: { streamPrefixes: ['account-'] } })
  const raw = JSON.stringify([created, requested])
  t.notMatch(raw, /nadia/, 'no e-mail in the events')
  t.notMatch(raw, new RegExp(STRONG), 'no password in the events')
  t.notMatch(raw, /kv_/, 'no confirmation token in the events')
  t.match((created!.data as { passwordHash: string }).passwordHash, /^\$argon2id\$/)
  t.match((requested!.data as { passwordHash: string }).passwordHash, /^\$argon2id\$/)
})

t.test('sessions: random token, stored only as a hash, expires, revoked on logout (R6)', async (t) => {
  let now = new Date('2030-01-01T00:00:00Z')
  const { app, pki, signUp } = await buildTestApi(t, { deps: { now: () => now } })
  await signUp('omar@example.org')
  const login = await app.inject({
    method: 'POST',
    url: '/v1/sessions',
    payload: { email: 'omar@example.org', password: STRONG },
  })
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
  const second = (
    await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'omar@example.org', password: STRONG } })
  ).json().token
  const logout = await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: bearer(second) })
  t.equal(logout.statusCode, 204)
  const after = await app.inject({ method: 'POST', url: '/v1/households', headers: bearer(second) })
  t.equal(after.statusCode, 401, 'a logged-out token is refused')
  const types = (await pki.store.readAll({ filter: { streamPrefixes: ['account-'] } })).map((e) => e.type)
  t.same(types, [
    'AccountCreated',
    'VerificationRequested',
    'AccountVerified',
    'SessionStarted',
    'SessionStarted',
    'SessionEnded',
  ])
})

t.test('a failed login does not reveal whether the e-mail exists', async (t) => {
  const { app, pki, signUp } = await buildTestApi(t)
  await signUp('pia@example.org')
  const wrong = await app.inject({
    method: 'POST',
    url: '/v1/sessions',
    payload: { email: 'pia@example.org', password: 'not-the-right-one' },
  })
  const unknown = await app.inject({
    method: 'POST',
    url: '/v1/sessions',
    payload: { email: 'nobody@example.org', password: 'not-the-right-one' },
  })
  t.equal(wrong.statusCode, 401)
  t.equal(unknown.statusCode, 401)
  t.same(wrong.json(), unknown.json(), 'same body')
  const failed = await pki.store.readAll({ filter: { types: ['LoginFailed'] } })
  t.same(
    failed.map((e) => [e.stream.replace(/-.*/, ''), (e.data as { reason: string }).reason]),
    [
      ['account', 'wrong-password'],
      ['security', 'unknown-account'],
    ],
    'both are events',
  )
})

t.test('login brute force: the 6th attempt after 5 failures waits, answered 429 with Retry-After (R6)', async (t) => {
  // a first wait of 10 minutes, so that no attempt below can outlast it on a slow machine
  const { app, pki, signUp } = await buildTestApi(t, { env: { KENNEL_LOGIN_FIRST_DELAY_SECONDS: '600' } })
  await signUp('quinn@example.org')
  for (let i = 1; i <= 5; i++) {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/sessions',
      payload: { email: 'quinn@example.org', password: `wrong-guess-${i}` },
    })
    t.equal(res.statusCode, 401, `failure ${i}`)
  }
  const blocked = await app.inject({
    method: 'POST',
    url: '/v1/sessions',
    payload: { email: 'quinn@example.org', password: STRONG },
  })
  t.equal(blocked.statusCode, 429, 'even the right password is refused while blocked')
  t.equal(blocked.json().error.code, 'KENNEL_ERR_RATE_LIMITED')
  t.ok(
    Number(blocked.headers['retry-after']) > 0 && Number(blocked.headers['retry-after']) <= 600,
    'the first wait, not an hour',
  )
  const other = await app.inject({
    method: 'POST',
    url: '/v1/sessions',
    payload: { email: 'quinn@example.org', password: STRONG },
    remoteAddress: '10.9.9.9',
  })
  t.equal(other.statusCode, 200, 'the block is per account and IP: the owner elsewhere still logs in')
  const limited = await pki.store.readAll({ filter: { types: ['RateLimitExceeded'] } })
  t.equal(limited.length, 1)
  t.match(limited[0]!.data, {
    listener: 'api',
    limit: 'login-account-ip',
    accountId: String,
    ip: String,
    retryAfterSeconds: Number,
    refusals: 1,
  })
  t.same(
    limited[0]!.data,
    rateLimitExceededData(limited[0]!.data),
    'written in the one shape the broker writes too (infra/net/events.ts), nothing to upcast',
  )
})

t.test('a success resets the consecutive-failure count', async (t) => {
  const { app, signUp } = await buildTestApi(t)
  await signUp('rosa@example.org')
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 4; i++)
      t.equal(
        (
          await app.inject({
            method: 'POST',
            url: '/v1/sessions',
            payload: { email: 'rosa@example.org', password: 'wrong-guess-xx' },
          })
        ).statusCode,
        401,
      )
    t.equal(
      (
        await app.inject({
          method: 'POST',
          url: '/v1/sessions',
          payload: { email: 'rosa@example.org', password: STRONG },
        })
      ).statusCode,
      200,
    )
  }
})

t.test('failures per IP per day are limited across accounts (R6)', async (t) => {
  const { app } = await buildTestApi(t, { env: { KENNEL_LOGIN_IP_DAILY_LIMIT: '3' } })
  for (let i = 0; i < 3; i++)
    t.equal(
      (
        await app.inject({
          method: 'POST',
          url: '/v1/sessions',
          payload: { email: `u${i}@example.org`, password: 'wrong-guess-xx' },
        })
      ).statusCode,
      401,
    )
  const res = await app.inject({
    method: 'POST',
    url: '/v1/sessions',
    payload: { email: 'u9@example.org', password: 'wrong-guess-xx' },
  })
  t.equal(res.statusCode, 429)
})

t.test('two concurrent sign-ups with one e-mail: exactly one account (uniqueness in the event store)', async (t) => {
  const { app, pki } = await buildTestApi(t)
  const signup = (email: string) =>
    app.inject({ method: 'POST', url: '/v1/accounts', payload: { email, password: STRONG } })
  const answers = await Promise.all([
    signup('twin@example.org'),
    signup('Twin@Example.org'),
    signup('twin@example.org'),
  ])
  t.same(
    answers.map((a) => [a.statusCode, a.body]),
    Array(3).fill([202, '{"status":"verification-pending"}']),
    'every sign-up is answered alike',
  )
  const created = await pki.store.readAll({ filter: { types: ['AccountCreated'] } })
  t.equal(created.length, 1, 'only one account exists')
  const reserved = await pki.store.readAll({ filter: { types: ['EmailReserved'] } })
  t.equal(reserved.length, 1, 'one reservation, in the stream named by the lookup hash')
  t.equal(reserved[0]!.stream, `email-${(created[0]!.data as { emailHash: string }).emailHash}`)
  t.equal((await signup('twin@example.org')).statusCode, 202)
  t.equal(
    (await pki.store.readAll({ filter: { types: ['AccountCreated'] } })).length,
    1,
    'and later sign-ups create none',
  )
})

t.test('a reservation left by a sign-up that died before AccountCreated is taken over once stale', async (t) => {
  let now = new Date('2030-01-01T00:00:00Z')
  const { app, pki } = await buildTestApi(t, { deps: { now: () => now } })
  const masterKey = loadMasterKey(pki.config)
  const emailHash = new EmailProtector(
    masterKey,
    new KeyRing(fileKeyStore(pki.config.dataDir), masterKey, 'person'),
  ).hash('orphan@example.org')
  const orphan = { emailHash, accountId: '00000000-0000-4000-8000-000000000000', reservedAt: now.toISOString() }
  await pki.store.append(`email-${emailHash}`, [{ type: 'EmailReserved', data: orphan }], {
    expectedRevision: 'no_stream',
  })
  const signup = () =>
    app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'orphan@example.org', password: STRONG } })
  const accounts = async () => (await pki.store.readAll({ filter: { types: ['AccountCreated'] } })).length
  t.equal((await signup()).statusCode, 202)
  t.equal(await accounts(), 0, 'a fresh reservation may still be completing: no account')
  now = new Date(now.getTime() + RESERVATION_TIMEOUT_MS + 1000)
  t.equal((await signup()).statusCode, 202)
  t.equal(await accounts(), 1, 'a stale one whose account never came to be is taken over')
  t.equal((await signup()).statusCode, 202)
  t.equal(await accounts(), 1)
  t.notOk(reservationHolds(orphan, false, now))
  t.ok(reservationHolds(orphan, true, now), 'a reservation whose account exists holds forever')
})

t.test('KENNEL_SESSION_TTL_MINUTES sets the session lifetime', async (t) => {
  let now = new Date('2030-01-01T00:00:00Z')
  const { app, signUp } = await buildTestApi(t, { env: { KENNEL_SESSION_TTL_MINUTES: '30' }, deps: { now: () => now } })
  await signUp('sven@example.org')
  const { token, expiresAt } = (
    await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'sven@example.org', password: STRONG } })
  ).json()
  t.equal(expiresAt, '2030-01-01T00:30:00.000Z')
  now = new Date('2030-01-01T00:29:59Z')
  t.equal((await app.inject({ method: 'GET', url: '/v1/households', headers: bearer(token) })).statusCode, 200)
  now = new Date('2030-01-01T00:30:01Z')
  t.equal((await app.inject({ method: 'GET', url: '/v1/households', headers: bearer(token) })).statusCode, 401)
})

t.test(
  'a login brute force keeps hammering while blocked: the events count every 429 and the monitor sees the storm (R11)',
  async (t) => {
    const { app, pki, signUp } = await buildTestApi(t, { env: { KENNEL_LOGIN_FIRST_DELAY_SECONDS: '600' } })
    await signUp('sven@example.org')
    let refused = 0
    for (let i = 1; i <= 40; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/sessions',
        payload: { email: 'sven@example.org', password: `wrong-guess-${i}` },
      })
      if (res.statusCode === 429) refused++
    }
    t.equal(refused, 35, 'five failures, then 35 refusals')
    await app.close()
    const limited = await pki.store.readAll({ filter: { types: ['RateLimitExceeded'] } })
    t.same(
      limited.map((e) => (e.data as { refusals: number }).refusals),
      [1, 34],
      'the first refusal at once, the rest of the minute when the API stops',
    )
    const storm = (count: number): number => {
      const monitor = createMonitorProjection({ 'rate-limit-storm': { count, windowSeconds: 60 } })
      const docs = new MemoryDocuments()
      for (const e of limited) monitor.apply(docs, e)
      return [...docs.values<OutboxEntry>(OUTBOX)].filter(
        (o) => (o.event.data as { rule: string }).rule === 'rate-limit-storm',
      ).length
    }
    t.same(
      [storm(refused), storm(refused + 1)],
      [1, 0],
      'one rate-limit-storm alert at the threshold, none above the burst',
    )
  },
)
