import t from 'tap'
import { rateLimitExceededData } from '../../infra/net/events.ts'
import { bearer, buildTestApi } from './helpers.ts'

// R6: a bearer token, stolen or scripted, cannot flood the API (one token created 7,126
// households in 15 s before this limit: each an event and a key file). KENNEL_ACCOUNT_API_LIMITS
// counts every request of an account on the bearer routes; over it, 429 with Retry-After, nothing
// done, and one RateLimitExceeded per window and minute with the rest of the flood counted.

t.test('an account over its request limit gets 429, nothing is done, and the flood is recorded', async (t) => {
  const api = await buildTestApi(t, { env: { KENNEL_ACCOUNT_API_LIMITS: '12/minute' } })
  const alice = await api.parent('alice@example.org')
  const bob = await api.parent('bob@example.org')
  const households = async () =>
    (await api.pki.store.readAll({ filter: { types: ['HouseholdCreated'] } })).filter(
      (e) => (e.metadata as { actor?: string }).actor === `account:${alice.accountId}`,
    ).length
  const create = () =>
    api.app.inject({ method: 'POST', url: '/v1/households', headers: bearer(alice.token), payload: {} })

  const statuses: number[] = []
  for (let i = 0; i < 20; i++) statuses.push((await create()).statusCode)
  const first429 = statuses.indexOf(429)
  t.ok(first429 > 0, 'the first requests pass, then the limit refuses')
  t.same(
    statuses.slice(first429),
    statuses.slice(first429).map(() => 429),
    'every request after the first refusal is refused',
  )
  const created = await households()
  t.equal(created, first429 + 1, 'only the admitted requests created a household (the helper made one)')

  const refused = await create()
  t.equal(refused.statusCode, 429)
  t.equal(refused.json().error.code, 'KENNEL_ERR_RATE_LIMITED')
  t.match(refused.json().error.message, /12\/minute per account/)
  t.ok(Number(refused.headers['retry-after']) >= 1, 'Retry-After says when to come back')
  t.equal(await households(), created, 'a refused request changes nothing')

  const other = await api.app.inject({ method: 'GET', url: '/v1/sessions/current', headers: bearer(bob.token) })
  t.equal(other.statusCode, 200, "another account is not limited by alice's flood")

  const events = async () => await api.pki.store.readAll({ filter: { types: ['RateLimitExceeded'] } })
  const [first, ...rest] = await events()
  t.equal(rest.length, 0, 'one event for the first refusal; the rest of the minute is counted')
  t.match(first!.data, {
    listener: 'api',
    limit: 'account-api',
    window: '12/minute',
    accountId: alice.accountId,
    refusals: 1,
  })
  t.same(first!.data, rateLimitExceededData(first!.data), 'in the one shape of the listeners’ refusals')
  t.match(first!.metadata, { actor: `account:${alice.accountId}`, credential: /^token:/ })

  await api.app.close()
  const after = await events()
  t.equal(after.length, 2, 'the rest of the flood is recorded when the API stops')
  t.equal(
    (after[1]!.data as { refusals: number }).refusals,
    statuses.length - first429,
    'with the number of refusals it stands for',
  )
})
