import type pg from 'pg'
import {
  connect,
  isConnectionLoss,
  openPool,
  query,
  unlessConnectionLost,
} from '../../infra/eventstore/pg-connections.ts'
import { WrongExpectedRevisionError } from '../../infra/eventstore/port.ts'
import {
  entryRowsOf,
  FORGETTABLE_KEY_PREFIX,
  type EntryLookups,
  type LookupOptions,
  type ProjectionChanges,
  type ReadModelStore,
  type StoredEntry,
  type StoredProjection,
} from './port.ts'

// Read models in PostgreSQL: tables in the same database and schema as the events, so the
// scale-out deployment has one database to secure (R7). Batches are written with unnest() so a
// commit is a handful of round trips whatever its size. The key index keeps one row per (key,
// event), event ids under `event:<id>`: PostgreSQL maintains it in place, so no deferred load.

const schemaSql = (s: string): string => `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.projection_checkpoints (name text PRIMARY KEY, version integer NOT NULL, position bigint NOT NULL);
CREATE TABLE IF NOT EXISTS ${s}.projection_documents (
  projection text NOT NULL, collection text NOT NULL, id text NOT NULL, doc text NOT NULL,
  PRIMARY KEY (projection, collection, id));
CREATE TABLE IF NOT EXISTS ${s}.projection_entries (
  projection text NOT NULL, position bigint NOT NULL, ordinal bigint NOT NULL, time text NOT NULL, digest bytea NOT NULL,
  PRIMARY KEY (projection, position));
CREATE TABLE IF NOT EXISTS ${s}.projection_keys (
  projection text NOT NULL, key text NOT NULL, time text NOT NULL, position bigint NOT NULL,
  PRIMARY KEY (projection, key, time, position));
CREATE TABLE IF NOT EXISTS ${s}.projection_cursors (name text PRIMARY KEY, position bigint NOT NULL);
CREATE INDEX IF NOT EXISTS forgettable_keys ON ${s}.projection_keys (projection, time) WHERE ${FORGETTABLE};
`

/** the predicate of the partial index forget() goes through: a literal, so the planner matches it */
const FORGETTABLE = `left(key, ${FORGETTABLE_KEY_PREFIX.length}) = '${FORGETTABLE_KEY_PREFIX}'`
const FORGET_SLICE = 10_000

export interface PostgresReadModelOptions {
  /** schema holding the tables; default: the URL's `schema` parameter, else `kennel` (as the event store) */
  schema?: string
}

export async function openPostgresReadModels(
  url: string,
  options: PostgresReadModelOptions = {},
): Promise<ReadModelStore & EntryLookups> {
  const u = new URL(url)
  const schema = options.schema ?? u.searchParams.get('schema') ?? 'kennel'
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema))
    throw new Error(`invalid PostgreSQL schema name ${JSON.stringify(schema)}`)
  u.searchParams.delete('schema')
  // a dropped connection (a restart, an admin) fails only what was using it, with
  // KENNEL_ERR_UNAVAILABLE; the next query reconnects (infra/eventstore/pg-connections.ts)
  const pool = openPool({ connectionString: u.toString(), max: 4, application_name: `kennel-readmodels:${schema}` })
  try {
    await pool.query(schemaSql(schema))
  } catch (err) {
    await pool.end()
    throw err
  }
  return new PostgresReadModels(pool, schema)
}

const int = (v: unknown): number => Number(v)

class PostgresReadModels implements ReadModelStore, EntryLookups {
  readonly kind = 'postgres' as const

  constructor(
    private readonly pool: pg.Pool,
    private readonly s: string,
  ) {}

  async load(name: string): Promise<StoredProjection | undefined> {
    const doing = `loading read model ${name}`
    const client = await connect(this.pool, doing)
    let lost = false
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ')
      const cp = await client.query(`SELECT version, position FROM ${this.s}.projection_checkpoints WHERE name = $1`, [
        name,
      ])
      if (cp.rowCount === 0) return undefined
      const docs = await client.query({
        text: `SELECT collection, id, doc FROM ${this.s}.projection_documents WHERE projection = $1`,
        values: [name],
        rowMode: 'array',
      })
      return {
        version: int(cp.rows[0].version),
        position: int(cp.rows[0].position),
        docs: (docs.rows as [string, string, string][]).map(([c, id, doc]) => [c, id, JSON.parse(doc)]),
      }
    } catch (err) {
      lost = isConnectionLoss(err)
      throw unlessConnectionLost(err, doing)
    } finally {
      if (!lost) await client.query('COMMIT').catch(() => {})
      client.release(lost)
    }
  }

  /** run fn in one transaction on one pooled connection; any failure rolls it back. A connection
   * lost before COMMIT returned leaves the outcome unknown: the caller reloads the checkpoints,
   * which were written in the same transaction, and goes on from what they say. */
  private async transaction(doing: string, fn: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    const client = await connect(this.pool, doing)
    let lost = false
    try {
      await client.query('BEGIN')
      await fn(client)
      await client.query('COMMIT')
    } catch (err) {
      lost = isConnectionLoss(err)
      if (!lost) await client.query('ROLLBACK').catch(() => {})
      throw unlessConnectionLost(err, doing, 'the transaction may or may not have been committed')
    } finally {
      client.release(lost)
    }
  }

  commit(changes: readonly ProjectionChanges[]): Promise<void> {
    return this.transaction(`committing read models ${changes.map((c) => c.name).join(', ')}`, async (client) => {
      for (const c of changes) await this.commitOne(client, c)
    })
  }

  private async commitOne(client: pg.PoolClient, c: ProjectionChanges): Promise<void> {
    const s = this.s
    // the row lock serialises writers of one projection; a missing row is created first so that
    // two first writers also conflict instead of both succeeding
    await client.query(
      `INSERT INTO ${s}.projection_checkpoints (name, version, position) VALUES ($1, $2, -1) ON CONFLICT (name) DO NOTHING`,
      [c.name, c.version],
    )
    const stored = await client.query(`SELECT position FROM ${s}.projection_checkpoints WHERE name = $1 FOR UPDATE`, [
      c.name,
    ])
    const position = int(stored.rows[0].position)
    const actual = position === -1 ? undefined : position
    if (actual !== c.expectedPosition) {
      throw new WrongExpectedRevisionError(
        `projection ${c.name}`,
        c.expectedPosition ?? 'no_stream',
        actual ?? 'no_stream',
        'another process moved the checkpoint',
      )
    }
    if (c.puts.length > 0) {
      // the last write of a key within one batch wins, as in the in-memory documents
      const latest = new Map<string, [string, string, string]>()
      for (const p of c.puts) latest.set(`${p[0]}\u0000${p[1]}`, p)
      const rows = [...latest.values()]
      await client.query(
        `INSERT INTO ${s}.projection_documents (projection, collection, id, doc)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])
         ON CONFLICT (projection, collection, id) DO UPDATE SET doc = excluded.doc`,
        [c.name, rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])],
      )
    }
    if (c.deletes.length > 0) {
      await client.query(
        `DELETE FROM ${s}.projection_documents WHERE projection = $1 AND (collection, id) IN (SELECT * FROM unnest($2::text[], $3::text[]))`,
        [c.name, c.deletes.map((d) => d[0]), c.deletes.map((d) => d[1])],
      )
    }
    const entries = c.columns === undefined ? c.entries : [...entryRowsOf(c.columns), ...c.entries]
    if (entries.length > 0) {
      await client.query(
        `INSERT INTO ${s}.projection_entries (projection, position, ordinal, time, digest)
         SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bytea[])
         ON CONFLICT (projection, position) DO UPDATE SET ordinal = excluded.ordinal, time = excluded.time, digest = excluded.digest`,
        [
          c.name,
          entries.map((e) => e.position),
          entries.map((e) => e.entry.ordinal),
          entries.map((e) => e.time),
          entries.map((e) => Buffer.from(e.entry.digest)),
        ],
      )
      const keys: [string, string, number][] = []
      for (const e of entries) {
        keys.push([`event:${e.eventId}`, e.time, e.position])
        for (const k of e.entry.keys) keys.push([k, e.time, e.position])
      }
      if (keys.length > 0) {
        await client.query(
          `INSERT INTO ${s}.projection_keys (projection, key, time, position)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[]) ON CONFLICT DO NOTHING`,
          [c.name, keys.map((k) => k[0]), keys.map((k) => k[1]), keys.map((k) => k[2])],
        )
      }
    }
    await client.query(`UPDATE ${s}.projection_checkpoints SET version = $2, position = $3 WHERE name = $1`, [
      c.name,
      c.version,
      c.position,
    ])
  }

  async settle(): Promise<void> {}

  reset(name: string): Promise<void> {
    return this.transaction(`resetting read model ${name}`, async (client) => {
      for (const table of ['projection_documents', 'projection_entries', 'projection_keys'])
        await client.query(`DELETE FROM ${this.s}.${table} WHERE projection = $1`, [name])
      await client.query(`DELETE FROM ${this.s}.projection_checkpoints WHERE name = $1`, [name])
    })
  }

  async forget(name: string, before: string): Promise<number> {
    // in slices, so that a first run over a large index is not one huge transaction; each slice
    // found through the partial index forgettable_keys
    let dropped = 0
    for (;;) {
      const { rowCount } = await query(
        this.pool,
        `forgetting the ${FORGETTABLE_KEY_PREFIX} keys of read model ${name}`,
        {
          text: `DELETE FROM ${this.s}.projection_keys WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM ${this.s}.projection_keys WHERE ${FORGETTABLE} AND projection = $1 AND time < $2 LIMIT ${FORGET_SLICE}))`,
          values: [name, before],
        },
      )
      dropped += rowCount ?? 0
      if ((rowCount ?? 0) < FORGET_SLICE) return dropped
    }
  }

  async lookup(name: string, key: string, options: LookupOptions = {}): Promise<number[]> {
    const r = await query<{ position: string }>(this.pool, `looking up ${name}`, {
      text: `SELECT position FROM ${this.s}.projection_keys WHERE projection = $1 AND key = $2 AND time >= $3 AND time < $4 ORDER BY time, position ${options.limit !== undefined ? 'LIMIT $5' : ''}`,
      values: [
        name,
        key,
        options.since ?? '',
        options.until ?? '\uffff',
        ...(options.limit !== undefined ? [options.limit] : []),
      ],
    })
    return r.rows.map((row) => int(row.position))
  }

  async positionOf(name: string, eventId: string): Promise<number | undefined> {
    const [position] = await this.lookup(name, `event:${eventId}`)
    return position
  }

  async entryAt(name: string, position: number): Promise<StoredEntry | undefined> {
    const r = await query<EntryRow>(this.pool, `reading ${name}`, {
      text: `SELECT ordinal, position, time, digest FROM ${this.s}.projection_entries WHERE projection = $1 AND position = $2`,
      values: [name, position],
    })
    return r.rows.map(toEntry)[0]
  }

  async entries(name: string, afterPosition: number, limit: number): Promise<StoredEntry[]> {
    const r = await query<EntryRow>(this.pool, `reading ${name}`, {
      text: `SELECT ordinal, position, time, digest FROM ${this.s}.projection_entries WHERE projection = $1 AND position > $2 ORDER BY position LIMIT $3`,
      values: [name, afterPosition, limit],
    })
    return r.rows.map(toEntry)
  }

  async checkpoints(): Promise<Map<string, number>> {
    const r = await query<{ name: string; position: string }>(this.pool, 'reading checkpoints', {
      text: `SELECT name, position FROM ${this.s}.projection_checkpoints`,
    })
    return new Map(r.rows.map((row) => [row.name, int(row.position)]))
  }

  async cursor(name: string): Promise<number> {
    const r = await query<{ position: string }>(this.pool, `reading cursor ${name}`, {
      text: `SELECT position FROM ${this.s}.projection_cursors WHERE name = $1`,
      values: [name],
    })
    return r.rows.length === 0 ? 0 : int(r.rows[0]!.position)
  }

  async setCursor(name: string, position: number): Promise<void> {
    await query(this.pool, `moving cursor ${name}`, {
      text: `INSERT INTO ${this.s}.projection_cursors (name, position) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET position = excluded.position`,
      values: [name, position],
    })
  }

  async close(): Promise<void> {
    await this.pool.end()
  }
}

interface EntryRow {
  ordinal: string
  position: string
  time: string
  digest: Buffer
}

const toEntry = (row: EntryRow): StoredEntry => ({
  ordinal: int(row.ordinal),
  position: int(row.position),
  time: row.time,
  digest: row.digest,
})
