import { createHash } from 'node:crypto'
import pg from 'pg'
import type { Logger } from '../log.ts'

// A lease on a role that must run once per cluster (the projector): a PostgreSQL session-level
// advisory lock, held on a connection of its own for as long as the holder lives. The server
// releases it the moment that session ends, so a holder killed with -9 (its socket closed by the
// kernel) frees it at once; a holder cut off without a closed socket is detected by the
// server's TCP keepalives on that session (set below, ~8 s). Candidates try to take it every
// `retryMs`; the holder checks its session every `checkMs` and, when the session is gone, gives
// up the role before anything else takes it over.
//
// The lock alone cannot stop a holder that has lost it but does not know yet from writing once
// more: what it writes must be fenced where it is written. The read models are: each commit
// compares the stored checkpoint with the one its writer last saw, in the same transaction
// (projections/readmodels/postgres.ts), so a deposed holder's commit fails instead of applying
// events twice or skipping some.

export interface LeaseOptions {
  /** the PostgreSQL URL (its `schema` parameter names the cluster) */
  url: string
  /** what is leased, e.g. `projector` */
  name: string
  log: Logger
  /** called once the lease is held; the role starts here */
  onAcquired(): Promise<void>
  /** called when the lease is lost or given up; the role stops here, before anyone else can take it */
  onLost(): Promise<void>
  /** how often a candidate tries to take the lease (default 2000 ms) */
  retryMs?: number
  /** how often the holder checks its session (default 2000 ms) */
  checkMs?: number
}

export interface Lease {
  /** whether this process holds the lease now */
  readonly held: boolean
  /** give the lease up (calling onLost first when held) and stop trying */
  stop(): Promise<void>
}

/** server-side keepalives on the lease session: a holder that vanished without closing its
 * socket is noticed after idle + interval × count seconds */
const KEEPALIVE = { idle: 4, interval: 1, count: 3 }

/** the advisory lock key of a lease: 64 bits of SHA-256 over the schema and the name */
export function leaseKey(url: string, name: string): string {
  const schema = new URL(url).searchParams.get('schema') ?? 'kennel'
  return createHash('sha256').update(`kennel-lease:${schema}:${name}`).digest().readBigInt64BE(0).toString()
}

/** the lease session's `application_name`, `kennel-lease:<schema>` like the cluster's other
 * connections (`kennel:<schema>`, `kennel-readmodels:<schema>`, `kennel-keys:<schema>`), so
 * that an operator ends one cluster's sessions and no other's */
export function leaseApplicationName(url: string): string {
  return `kennel-lease:${new URL(url).searchParams.get('schema') ?? 'kennel'}`
}

export function holdPostgresLease(o: LeaseOptions): Lease {
  const key = leaseKey(o.url, o.name)
  const applicationName = leaseApplicationName(o.url)
  const u = new URL(o.url)
  u.searchParams.delete('schema')
  const retryMs = o.retryMs ?? 2000
  const checkMs = o.checkMs ?? 2000
  let held = false
  let stopping = false
  let client: pg.Client | undefined
  let timer: NodeJS.Timeout | undefined
  let wake: (() => void) | undefined
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      wake = resolve
      timer = setTimeout(resolve, ms)
    })

  async function open(): Promise<pg.Client> {
    const c = new pg.Client({
      connectionString: u.toString(),
      application_name: applicationName,
      keepAlive: true,
      connectionTimeoutMillis: 5000,
    })
    c.on('error', () => undefined)
    await c.connect()
    await c.query(
      `SET tcp_keepalives_idle = ${KEEPALIVE.idle}; SET tcp_keepalives_interval = ${KEEPALIVE.interval}; SET tcp_keepalives_count = ${KEEPALIVE.count}`,
    )
    return c
  }

  async function close(): Promise<void> {
    const c = client
    client = undefined
    await c?.end().catch(() => undefined)
  }

  async function loop(): Promise<void> {
    let announced = false
    while (!stopping) {
      try {
        client ??= await open()
        const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key])
        if (r.rows[0]?.ok && !stopping) {
          held = true
          o.log.info({ lease: o.name }, `${o.name} lease acquired: this node is the active ${o.name}`)
          await o.onAcquired()
          await holdWhileAlive(client)
        } else if (!announced) {
          o.log.info({ lease: o.name }, `${o.name} lease held by another node: standing by`)
          announced = true
        }
      } catch (err) {
        if (!stopping) o.log.warn({ err, lease: o.name }, `${o.name} lease: PostgreSQL unreachable; retrying`)
        await close()
      }
      if (held) {
        held = false
        announced = false
        await o.onLost().catch((err: unknown) => o.log.error({ err, lease: o.name }, `${o.name} did not stop cleanly`))
        if (!stopping) o.log.warn({ lease: o.name }, `${o.name} lease lost: standing by`)
        await close()
      }
      if (!stopping) await sleep(retryMs)
    }
  }

  /** returns when the session that holds the lock has ended, or the lease is being stopped */
  async function holdWhileAlive(c: pg.Client): Promise<void> {
    let ended = false
    const onEnd = (): void => {
      ended = true
      wake?.()
    }
    c.once('end', onEnd)
    c.once('error', onEnd)
    try {
      while (!stopping && !ended) {
        await sleep(checkMs)
        if (stopping || ended) break
        await c.query('SELECT 1')
      }
    } finally {
      c.off('end', onEnd)
      c.off('error', onEnd)
    }
    if (ended) throw new Error('the lease session ended')
  }

  const running = loop()
  return {
    get held() {
      return held
    },
    async stop() {
      stopping = true
      if (timer) clearTimeout(timer)
      wake?.()
      await running
      // the role has stopped (onLost): only now may another node take over
      await close()
    },
  }
}
