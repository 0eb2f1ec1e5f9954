import pg from 'pg'
import { KennelError } from '../errors.ts'

// PostgreSQL connections for the event store and the read models, and what a lost one means.
// The database can drop a connection at any time (a restart, a failover, pg_terminate_backend,
// a network cut). node-postgres reports it as an 'error' event: the pool's listener covers idle
// connections only, and a connection checked out for a transaction emits 'error' itself, which
// ends the process when nothing listens. So every connection gets a listener when the pool opens
// it; the pool discards a broken connection when it is released, and the next query opens a new
// one. The operation that was using it fails with KENNEL_ERR_UNAVAILABLE (HTTP 503), a coded,
// retryable error.

/** the server ended the session: administrator command, crash, start-up or shutdown in progress */
const SERVER_ENDED = new Set(['57P01', '57P02', '57P03'])
/** the socket broke, or the server could not be reached */
const SOCKET_FAILED = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
])
/** node-postgres's own messages for a connection that ended or broke */
const DRIVER_LOST = /Connection terminated|not queryable|Connection ended|timeout exceeded when trying to connect/i

/** A pool whose connections never end the process when the server drops them. */
export function openPool(config: pg.PoolConfig): pg.Pool {
  const pool = new pg.Pool(config)
  const ignore = (): void => {}
  pool.on('error', ignore)
  pool.on('connect', (client) => client.on('error', ignore))
  return pool
}

/** true for an error that means the connection, not the statement, failed: SQLSTATE class 08
 * (connection exception), 57P01–57P03, a broken socket or node-postgres's connection errors */
export function isConnectionLoss(err: unknown): boolean {
  const { code, message } = err as { code?: unknown; message?: unknown }
  if (typeof code === 'string' && (code.startsWith('08') || SERVER_ENDED.has(code) || SOCKET_FAILED.has(code)))
    return true
  return typeof message === 'string' && DRIVER_LOST.test(message)
}

function describe(err: unknown): string {
  const code = (err as { code?: unknown }).code
  return `${(err as Error).message}${typeof code === 'string' ? ` (${code})` : ''}`
}

/** `doing` failed because the connection did: KENNEL_ERR_UNAVAILABLE naming it; any other error
 * is returned unchanged. `outcome` tells the caller what may have happened (e.g. for a write). */
export function unlessConnectionLost(err: unknown, doing: string, outcome = ''): unknown {
  if (!isConnectionLoss(err)) return err
  return new KennelError(
    'KENNEL_ERR_UNAVAILABLE',
    `PostgreSQL connection lost while ${doing}: ${describe(err)}${outcome ? `; ${outcome}` : ''}`,
    { retryable: true },
    { cause: err },
  )
}

/** A pooled connection. Any failure to get one (server down, connections refused, login not
 * allowed, too many connections) is KENNEL_ERR_UNAVAILABLE: nothing was sent, so a retry is safe. */
export async function connect(pool: pg.Pool, doing: string): Promise<pg.PoolClient> {
  try {
    return await pool.connect()
  } catch (err) {
    throw new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `cannot reach PostgreSQL while ${doing}: ${describe(err)}`,
      { retryable: true },
      { cause: err },
    )
  }
}

/** One statement on a pooled connection, with connection failures mapped as above. */
export async function query<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  doing: string,
  statement: pg.QueryConfig,
  outcome?: string,
): Promise<pg.QueryResult<R>> {
  const client = await connect(pool, doing)
  let lost = false
  try {
    return await client.query<R>(statement)
  } catch (err) {
    lost = isConnectionLoss(err)
    throw unlessConnectionLost(err, doing, outcome)
  } finally {
    // a broken connection is discarded, not handed to the next query
    client.release(lost)
  }
}
