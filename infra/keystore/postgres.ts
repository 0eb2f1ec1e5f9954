import { createHash } from 'node:crypto'
import type pg from 'pg'
import { KennelError } from '../errors.ts'
import { openPool, query } from '../eventstore/pg-connections.ts'
import type { KeyRingName, KeyStore, StoredKey } from './port.ts'

// Wrapped keys in the event store's PostgreSQL schema, one row per (ring, owner), so every node of
// a cluster opens what any node sealed and a shred on one node holds on all. Only keys wrapped by
// the master key are stored: a database dump alone opens nothing. Creation is race-free (INSERT …
// ON CONFLICT DO NOTHING, then SELECT: every creator gets the row that won). A shred deletes the
// wrapped key and keeps the row as a tombstone (wrapped NULL, shredded_at set), so the owner is
// never given a new key.

/** how long a node keeps using a key it read before reading it again: a shred on another node
 * takes effect here at most this late (docs/PRIVACY.md) */
export const POSTGRES_KEY_RECHECK_MS = 5_000

const LOCK_CLASS = 0x4b4e4c00 // the event store's advisory-lock namespace: +0 is schema creation

const schemaSql = (s: string): string => `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.kennel_keys (
  ring text NOT NULL,
  owner text NOT NULL,
  wrapped bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  shredded_at timestamptz,
  PRIMARY KEY (ring, owner),
  CHECK ((wrapped IS NULL) = (shredded_at IS NOT NULL))
);
`

export interface PostgresKeyStoreOptions {
  /** default POSTGRES_KEY_RECHECK_MS */
  recheckMs?: number
}

/** `postgres://…?schema=name` as the event store takes it (default schema `kennel`) */
export async function openPostgresKeyStore(url: string, options: PostgresKeyStoreOptions = {}): Promise<KeyStore> {
  const u = new URL(url)
  const schema = u.searchParams.get('schema') ?? 'kennel'
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema))
    throw new KennelError(
      'KENNEL_ERR_EVENTSTORE_URL',
      `invalid schema ${JSON.stringify(schema)}: lower-case letters, digits and _, at most 63`,
    )
  u.searchParams.delete('schema')
  const pool = openPool({ connectionString: u.toString(), max: 2, application_name: `kennel-keys:${schema}` })
  const s = `"${schema}"`
  try {
    const client = await pool.connect()
    try {
      // concurrent CREATE … IF NOT EXISTS can still collide: nodes starting at once take turns
      await client.query('BEGIN')
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', [
        LOCK_CLASS,
        createHash('sha256').update(schema).digest().readInt32BE(0),
      ])
      await client.query(schemaSql(s))
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.release()
    }
  } catch (err) {
    await pool.end()
    if (err instanceof KennelError) throw err
    throw new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `cannot open the PostgreSQL key store (schema ${schema}): ${(err as Error).message}`,
      { schema, retryable: true },
      { cause: err },
    )
  }
  return new PostgresKeyStore(pool, s, options.recheckMs ?? POSTGRES_KEY_RECHECK_MS)
}

interface Row {
  wrapped: Buffer | null
}

class PostgresKeyStore implements KeyStore {
  readonly kind = 'postgres' as const

  constructor(
    private readonly pool: pg.Pool,
    private readonly s: string,
    readonly recheckMs: number,
  ) {}

  async read(ring: KeyRingName, owner: string): Promise<StoredKey | undefined> {
    const { rows } = await query<Row>(this.pool, `reading the ${ring} key of ${owner}`, {
      text: `SELECT wrapped FROM ${this.s}.kennel_keys WHERE ring = $1 AND owner = $2`,
      values: [ring, owner],
    })
    return rows[0] === undefined ? undefined : stored(rows[0])
  }

  async create(ring: KeyRingName, owner: string, wrapped: Buffer): Promise<StoredKey> {
    const doing = `creating the ${ring} key of ${owner}`
    await query(this.pool, doing, {
      text: `INSERT INTO ${this.s}.kennel_keys (ring, owner, wrapped) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
      values: [ring, owner, wrapped],
    })
    // a statement of its own: it sees the row of a creator that won the conflict, now committed
    const found = await this.read(ring, owner)
    if (found === undefined)
      throw new KennelError('KENNEL_ERR_INTERNAL', `${doing}: the row is missing right after it was inserted`)
    return found
  }

  async shred(ring: KeyRingName, owner: string): Promise<void> {
    await query(this.pool, `shredding the ${ring} key of ${owner}`, {
      text: `INSERT INTO ${this.s}.kennel_keys AS k (ring, owner, wrapped, shredded_at) VALUES ($1, $2, NULL, now())
             ON CONFLICT (ring, owner) DO UPDATE SET wrapped = NULL, shredded_at = coalesce(k.shredded_at, now())`,
      values: [ring, owner],
    })
  }

  async close(): Promise<void> {
    await this.pool.end()
  }
}

const stored = (row: Row): StoredKey =>
  row.wrapped === null ? { state: 'shredded' } : { state: 'live', wrapped: row.wrapped }
