import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t from 'tap'
import { loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { request } from '../api/helpers.ts'
import { enrollToys, kennelEnv, PublishingToy, startKennelChild, until } from './kennel-child.ts'

// `kennel start` on PostgreSQL whose connections the server drops (pg_terminate_backend) while
// toys publish QoS 1 messages. kennel connects as a role of its own, so the test can end exactly
// its connections, and hold the outage open by refusing that role's logins meanwhile. Each round:
// appends are held at a lock on the events table (so none is half-way through a commit), logins
// are refused, kennel's connections are dropped; then an API request is answered 503, and the
// toys' publishes are refused (no PUBACK, connection closed). After the outage the toys
// reconnect and re-send, and every publish that got its PUBACK has exactly one PublishAccepted.

const base = process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const admin = new pg.Client({ connectionString: base, connectionTimeoutMillis: 3000 })
const skip = await admin.connect().then(
  () => false,
  (err: Error) => `PostgreSQL unreachable at ${base.replace(/\/\/[^@]*@/, '//***@')}: ${err.message}`,
)
if (!skip) t.teardown(() => admin.end())

const ROUNDS = 3

t.test(
  'PostgreSQL connections dropped under load: kennel stays up, answers 503 meanwhile, and loses no acknowledged publish',
  { skip },
  async (t) => {
    const name = `kfault_${randomBytes(5).toString('hex')}`
    const database = new URL(base).pathname.slice(1)
    await admin.query(`CREATE ROLE ${name} LOGIN`)
    await admin.query(`GRANT CREATE ON DATABASE "${database}" TO ${name}`)
    t.teardown(async () => {
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [name])
      await admin.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`)
      await admin.query(`DROP OWNED BY ${name}`)
      await admin.query(`DROP ROLE ${name}`)
    })
    const url = new URL(base)
    url.username = name
    url.password = ''
    url.searchParams.set('schema', name)

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-pgfault-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const env = kennelEnv(dir, { KENNEL_EVENTSTORE: url.toString() })
    const config = loadConfig(env)
    const toys = await enrollToys(config, ['toy-p1', 'toy-p2'])
    const kennel = await startKennelChild(t, env)
    const ca = toys[0]!.caPem
    const load = toys.map(
      (toy) => new PublishingToy(toy, kennel.mqttPort, { reconnectPeriod: 200, clean: false, window: 8 }),
    )
    t.teardown(() => Promise.all(load.map((l) => l.stop())))
    const acked = (): number => load.reduce((n, l) => n + l.acked.size, 0)
    const waitingOnLock = async (): Promise<boolean> =>
      (await admin.query(`SELECT 1 FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock'`, [name]))
        .rowCount! > 0

    for (let round = 0; round < ROUNDS; round++) {
      const before = acked()
      await until(`publishes acknowledged before round ${round}`, () => acked() >= before + 50)
      const locker = new pg.Client({ connectionString: base })
      await locker.connect()
      t.teardown(() => locker.end().catch(() => undefined))
      await locker.query('BEGIN')
      await locker.query(`LOCK TABLE ${name}.events IN EXCLUSIVE MODE`)
      await until('an append waiting on the lock', waitingOnLock)
      const closes = load.map((l) => l.closes)
      await admin.query(`ALTER ROLE ${name} NOLOGIN`)
      const dropped = await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [
        name,
      ])
      t.ok(dropped.rowCount! > 0, `round ${round}: kennel's ${dropped.rowCount} connections dropped`)

      const res = await request(kennel.apiPort, {
        method: 'POST',
        path: '/v1/sessions',
        ca,
        body: { email: `nobody-${round}@example.org`, password: 'violet-Harbour-43-quiet-Lantern' },
      })
      t.equal(res.status, 503, `round ${round}: an API request during the outage is answered 503`)
      t.ok(Number(res.headers['retry-after']) > 0, `with Retry-After (${res.headers['retry-after']})`)
      t.equal(res.json().error.code, 'KENNEL_ERR_UNAVAILABLE', 'and the JSON error body')
      await until('every toy to lose its connection (its publishes refused)', () =>
        load.every((l, i) => l.closes > closes[i]!),
      )

      await locker.query('COMMIT')
      await admin.query(`ALTER ROLE ${name} LOGIN`)
    }
    const after = acked()
    await until('publishes acknowledged after the last outage', () => acked() >= after + 50)
    t.equal(kennel.process.exitCode, null, 'kennel is still running')
    t.equal((await request(kennel.apiPort, { method: 'GET', path: '/healthz', ca })).status, 200, 'and serving')
    await Promise.all(load.map((l) => l.stop(10_000)))
    t.equal(await kennel.stop(), 0, 'kennel stops cleanly')

    const store = await openEventStore(url.toString(), { environment: config.env })
    t.teardown(() => store.close())
    const recorded = new Map<string, number>()
    for (const e of await store.readAll({ filter: { types: ['PublishAccepted'] } })) {
      const sha = (e.data as { sha256: string }).sha256
      recorded.set(sha, (recorded.get(sha) ?? 0) + 1)
    }
    const ackedShas = load.flatMap((l) => [...l.acked])
    t.ok(ackedShas.length > 0, `${ackedShas.length} publishes acknowledged`)
    t.equal(
      ackedShas.filter((sha) => !recorded.has(sha)).length,
      0,
      'every acknowledged publish has its PublishAccepted',
    )
    t.equal(ackedShas.filter((sha) => recorded.get(sha)! > 1).length, 0, 'exactly one each')
    const disconnects = await store.readAll({ filter: { types: ['DeviceDisconnected'] } })
    t.ok(
      disconnects.some((e) => (e.data as { reason: string }).reason === 'event-store-unavailable'),
      'the refused sessions are on record as event-store-unavailable',
    )
  },
)
