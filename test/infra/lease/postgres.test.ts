import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t from 'tap'
import { holdPostgresLease } from '../../../infra/lease/postgres.ts'
import { createLogger } from '../../../infra/log.ts'

// The lease session is named after its cluster's schema, like the cluster's other connections:
// it was `kennel-lease:projector` in every cluster, so an operator (or a fault test) ending one
// cluster's sessions by name, `application_name LIKE 'kennel%:<schema>'`, missed its lease, and
// ending the lease by its name ended every cluster's. Ending exactly one cluster's lease session
// hands the lease over within that cluster and leaves another cluster's holder alone.

const base = process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const admin = new pg.Client({ connectionString: base, connectionTimeoutMillis: 3000 })
const skip = await admin.connect().then(
  () => false,
  (err: Error) => `PostgreSQL unreachable at ${base.replace(/\/\/[^@]*@/, '//***@')}: ${err.message}`,
)
if (!skip) t.teardown(() => admin.end())

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 20 s`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test(
  "ending one cluster's sessions by the schema in their names ends its lease session and no other cluster's",
  { skip },
  async (t) => {
    const schemas = [`klname_${randomBytes(4).toString('hex')}`, `klname_${randomBytes(4).toString('hex')}`]
    const log = createLogger('silent')
    const events: string[] = []
    const leases = schemas.map((schema) => {
      const url = new URL(base)
      url.searchParams.set('schema', schema)
      return holdPostgresLease({
        url: url.toString(),
        name: 'projector',
        log,
        retryMs: 100,
        checkMs: 100,
        onAcquired: async () => void events.push(`acquired ${schema}`),
        onLost: async () => void events.push(`lost ${schema}`),
      })
    })
    t.teardown(() => Promise.all(leases.map((l) => l.stop())))
    await until('both clusters hold their lease', () => leases.every((l) => l.held))

    const ended = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1`,
      [`kennel%:${schemas[0]}`],
    )
    t.equal(ended.rowCount, 1, "the first cluster's lease session is found by its schema")
    await until(
      'the first cluster takes its lease again',
      () => events.filter((e) => e === `acquired ${schemas[0]}`).length === 2,
    )
    t.same(
      events.filter((e) => e.endsWith(schemas[1]!)),
      [`acquired ${schemas[1]}`],
      "the other cluster's holder kept its lease",
    )
  },
)
