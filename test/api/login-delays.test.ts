import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import path from 'node:path'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { LoginLimiter, loginDelaySeconds, loginKeys, type LoginKeys } from '../../api/accounts/login-limiter.ts'
import { unblockLogin } from '../../bin/commands/account.ts'
import { createMonitorProjection } from '../../projections/monitor/projection.ts'
import { OUTBOX, type OutboxEntry } from '../../projections/outbox.ts'
import { MemoryDocuments } from '../../projections/projection.ts'
import { buildTestApi, STRONG, type TestApi } from './helpers.ts'

// Brute-force protection that cannot be used to lock the owner out (R6): after the free failures
// each attempt per account and address waits 1 s, 2 s, 4 s … (capped), not an hour, and
// `kennel account unblock` lifts the waits for an account while the API runs.

const limits = { freeFailures: 5, firstDelaySeconds: 1, maxDelaySeconds: 900, ipDailyFailures: 100 }
const login = (api: TestApi, email: string, password: string, ip = '127.0.0.1') =>
  api.app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password }, remoteAddress: ip })

t.test('the wait doubles after the free failures and stops at the cap', async (t) => {
  t.same(
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15, 40].map((n) => loginDelaySeconds(n, limits)),
    [0, 0, 0, 0, 1, 2, 4, 8, 16, 512, 900, 900],
  )
  t.same(
    [3, 4, 5].map((n) => loginDelaySeconds(n, { freeFailures: 3, firstDelaySeconds: 30, maxDelaySeconds: 100 })),
    [30, 60, 100],
  )
})

async function limiterContract(t: Test, redis?: Redis): Promise<void> {
  const limiter = new LoginLimiter({ ...limits, ipDailyFailures: 13 }, redis)
  const ip = `2001:db8::${randomBytes(2).toString('hex')}:${randomBytes(2).toString('hex')}`
  const keys = (account: string, lifts = { account: 0, accountIp: 0, ip: 0 }): LoginKeys =>
    loginKeys(`${account}-${randomBytes(8).toString('hex')}`, ip, lifts)
  const a = keys('a')
  const imposed = []
  for (let i = 0; i < 8; i++) imposed.push(await limiter.failed(a))
  t.same(imposed, [0, 0, 0, 0, 1, 2, 4, 8], 'the waits each failure imposes')
  const block = await limiter.blocked(a)
  t.equal(block?.limit, 'login-account-ip')
  t.ok(
    block!.retryAfterSeconds >= 1 && block!.retryAfterSeconds <= 8,
    `Retry-After ${block?.retryAfterSeconds} s is the current wait`,
  )
  await limiter.succeeded(a)
  t.equal(await limiter.blocked(a), undefined, 'a success ends the wait')
  t.equal(await limiter.failed(a), 0, 'and starts the count again')
  const b = keys('b')
  for (let i = 0; i < 3; i++) await limiter.failed(b)
  t.equal(await limiter.blocked(b), undefined, 'other accounts are counted apart')
  const c = keys('c')
  t.same(await limiter.blocked(c), undefined)
  await limiter.failed(c)
  // 8 + 1 + 3 + 1 failures from one address: its daily cap of 13 is reached for every account
  t.equal((await limiter.blocked(keys('d')))?.limit, 'login-ip-day')
  if (redis) {
    const patterns = ['kennel-login-failures', 'kennel-login-wait', 'kennel-login-fail-ip-day'].flatMap((p) =>
      [a, b, c].flatMap((k) => [`${p}:${k.accountIp}`, `${p}:${k.ip}`]),
    )
    await redis.del(...patterns)
  }
}

t.test('the login limiter on memory', (t) => limiterContract(t))

const redisUrl = process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const reachable = await new Promise<boolean>((resolve) => {
  const u = new URL(redisUrl)
  const s = net.connect(Number(u.port || 6379), u.hostname, () => (s.destroy(), resolve(true)))
  s.on('error', () => resolve(false))
})
t.test(
  'the login limiter on Redis (shared by every API process)',
  { skip: reachable ? false : `Redis not reachable at ${redisUrl} (set KENNEL_TEST_REDIS_URL)` },
  async (t) => {
    const redis = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1 })
    t.teardown(() => redis.disconnect())
    await limiterContract(t, redis)
  },
)

t.test('a wait ends by itself within seconds: the owner logs in after it, with no hour-long block', async (t) => {
  const api = await buildTestApi(t)
  await api.signUp('nora@example.org')
  for (let i = 1; i <= 5; i++) t.equal((await login(api, 'nora@example.org', `wrong-guess-${i}`)).statusCode, 401)
  const deadline = Date.now() + 60_000
  let answer = await login(api, 'nora@example.org', STRONG)
  let waited = 0
  while (answer.statusCode === 429 && Date.now() < deadline) {
    waited++
    await new Promise((r) => setTimeout(r, Math.min(250, Number(answer.headers['retry-after']) * 1000)))
    answer = await login(api, 'nora@example.org', STRONG)
  }
  t.equal(answer.statusCode, 200, `logged in after ${waited} refused attempts`)
  t.equal(
    (await api.pki.store.readAll({ filter: { types: ['LoginFailed'] } })).length,
    5,
    'attempts while waiting are not failures: they do not lengthen the wait',
  )
})

function kennel(dataDir: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.resolve('bin/kennel.js'), ...args], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: dataDir,
        USER: 'ops-on-call',
        KENNEL_ENV: 'test',
        KENNEL_DATA_DIR: dataDir,
      },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('kennel account unblock, run in another process, lifts the waits in the running API', async (t) => {
  // a first wait of 10 minutes: nothing below can outlast it on a slow machine
  const api = await buildTestApi(t, {
    env: { KENNEL_LOGIN_FIRST_DELAY_SECONDS: '600', KENNEL_LOGIN_IP_DAILY_LIMIT: '8' },
  })
  const accountId = await api.signUp('olga@example.org')
  await api.signUp('peer@example.org')
  for (const ip of ['10.0.0.1', '10.0.0.2'])
    for (let i = 1; i <= 5; i++) await login(api, 'olga@example.org', `wrong-guess-${i}`, ip)
  for (let i = 1; i <= 3; i++) await login(api, 'peer@example.org', `wrong-guess-${i}`, '10.0.0.2')
  t.equal((await login(api, 'olga@example.org', STRONG, '10.0.0.1')).statusCode, 429)
  t.equal((await login(api, 'olga@example.org', STRONG, '10.0.0.2')).statusCode, 429)
  const peerBlocked = await login(api, 'peer@example.org', STRONG, '10.0.0.2')
  t.equal(peerBlocked.statusCode, 429, '10.0.0.2 reached its daily cap of 8 failures')
  t.match(peerBlocked.json().error.message, /from this address today/)
  // the API's read models follow the store the CLI appended to (generous: a loaded machine)
  const applied = async () => {
    const head = await api.pki.store.headPosition()
    for (let attempt = 1; ; attempt++) {
      try {
        return await api.app.readModels.waitFor(head)
      } catch (err) {
        if (attempt === 6) throw err
      }
    }
  }

  const one = await kennel(api.pki.dir, ['account', 'unblock', 'olga@example.org', '--ip', '10.0.0.1'])
  t.equal(one.code, 0, one.stderr)
  t.match(one.stdout, new RegExp(`login waits lifted for account ${accountId} at 10\\.0\\.0\\.1`))
  await applied()
  t.equal((await login(api, 'olga@example.org', STRONG, '10.0.0.1')).statusCode, 200, 'lifted at that address')
  t.equal((await login(api, 'olga@example.org', STRONG, '10.0.0.2')).statusCode, 429, 'not at the other')

  const all = await kennel(api.pki.dir, ['account', 'unblock', 'olga@example.org'])
  t.equal(all.code, 0, all.stderr)
  await applied()
  t.equal(
    (await login(api, 'peer@example.org', STRONG, '10.0.0.2')).statusCode,
    429,
    "without --ip the address's daily cap stays",
  )
  t.equal(
    (await login(api, 'olga@example.org', STRONG, '10.0.0.2')).statusCode,
    429,
    'and so does the cap for every account there',
  )

  const ipToo = await kennel(api.pki.dir, ['account', 'unblock', 'peer@example.org', '--ip', '10.0.0.2'])
  t.equal(ipToo.code, 0, ipToo.stderr)
  await applied()
  t.equal(
    (await login(api, 'olga@example.org', STRONG, '10.0.0.2')).statusCode,
    200,
    'lifted at every address, and the daily cap of 10.0.0.2 with --ip',
  )
  t.equal((await login(api, 'peer@example.org', STRONG, '10.0.0.2')).statusCode, 200)

  const lifted = await api.pki.store.readAll({ filter: { types: ['LoginBlockLifted'] } })
  t.same(
    lifted.map((e) => [e.stream, (e.data as { ip?: string }).ip, e.metadata.actor]),
    [
      [`account-${accountId}`, '10.0.0.1', 'cli:ops-on-call'],
      [`account-${accountId}`, undefined, 'cli:ops-on-call'],
      [lifted[2]!.stream, '10.0.0.2', 'cli:ops-on-call'],
    ],
    'each lift is an event naming who ran it',
  )

  const ctx = { config: api.pki.config, store: api.pki.store, actor: 'cli:test' }
  await t.rejects(unblockLogin(ctx, 'nobody@example.org'), { code: 'KENNEL_ERR_NOT_FOUND' })
  await t.rejects(unblockLogin(ctx, 'olga@example.org', '10.0.0.999'), { code: 'KENNEL_ERR_VALIDATION' })
  const bad = await kennel(api.pki.dir, ['account', 'unblock', 'nobody@example.org'])
  t.equal(bad.code, 66)
  t.match(bad.stderr, /no account with this e-mail address \(KENNEL_ERR_NOT_FOUND\)/)
})

t.test('the security monitor still sees every failed login (R11)', async (t) => {
  const api = await buildTestApi(t, { env: { KENNEL_LOGIN_FIRST_DELAY_SECONDS: '600' } })
  await api.signUp('quentin@example.org')
  for (let i = 1; i <= 12; i++)
    await login(api, i % 2 ? 'quentin@example.org' : `nobody${i}@example.org`, `wrong-guess-${i}`, '198.51.100.7')
  const failed = await api.pki.store.readAll({ filter: { types: ['LoginFailed'] } })
  t.equal(failed.length, 11, 'every checked password that was wrong is a LoginFailed (the 6th for the account waited)')
  const monitor = createMonitorProjection({ 'auth-failures-per-ip': { count: 10, windowSeconds: 60 } })
  const docs = new MemoryDocuments()
  for (const e of failed) monitor.apply(docs, e)
  const alerts = [...docs.values<OutboxEntry>(OUTBOX)].map((o) => o.event.data as { rule: string; key: string })
  t.same(
    alerts.map((a) => [a.rule, a.key]),
    [['auth-failures-per-ip', '198.51.100.7']],
  )
})
