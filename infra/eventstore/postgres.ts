import { createHash } from 'node:crypto'
import type pg from 'pg'
import { KennelError } from '../errors.ts'
import {
  type AppendOptions,
  type AppendResult,
  type EventFilter,
  type EventStore,
  type ExpectedRevision,
  type NewEvent,
  type OpenOptions,
  type PreparedEvent,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type SubscribeOptions,
  type Subscription,
  WrongExpectedRevisionError,
  prepareAppend,
} from './port.ts'
import { type AppendedEvent, LiveFeed } from './subscription.ts'
import { openPool, query } from './pg-connections.ts'

// PostgreSQL event store. The commit-order gap (docs/ARCHITECTURE.md, "Event
// stores"): with positions handed out by concurrent transactions, a reader can pass a position
// whose transaction commits later and skip it for ever. Here every append takes one advisory
// transaction lock inside the append function, so writers are serialised, positions are dense
// and their order is commit order; a reader's snapshot always holds a prefix of the positions.
// To keep throughput, appends that queue up while a batch is in flight go to the server as one
// batch: one function call, one transaction, one WAL flush (group commit), where each append
// keeps its own outcome (see append_batch).

const MAX_BATCH = 64 // a transaction with more subtransactions than a backend caches (64) slows every reader's snapshot
const IN_FLIGHT = 2 // a second batch waits on the lock while the first commits, saving a round trip
const POLL_MS = 25 // how soon a commit by another process reaches this process's subscriptions
const LOCK_CLASS = 0x4b4e4c00 // advisory-lock namespace: +0 schema creation, +1 appends

const WRONG_REVISION = 'KNWER'
const DUPLICATE = 'KNDUP'

function schemaSql(s: string): string {
  return `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE ${s}.kennel_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE ${s}.events (
  position bigint PRIMARY KEY,
  id uuid NOT NULL UNIQUE,
  stream text NOT NULL,
  revision integer NOT NULL,
  type text NOT NULL,
  time timestamptz NOT NULL,
  data json NOT NULL,
  metadata json NOT NULL,
  UNIQUE (stream, revision)
);
CREATE INDEX events_type ON ${s}.events (type, position);

CREATE FUNCTION ${s}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events are %', CASE TG_OP WHEN 'UPDATE' THEN 'immutable' ELSE 'append-only' END USING ERRCODE = 'KNIMM';
END $$;
CREATE TRIGGER events_are_immutable BEFORE UPDATE OR DELETE ON ${s}.events FOR EACH ROW EXECUTE FUNCTION ${s}.refuse_change();
CREATE TRIGGER events_are_not_truncated BEFORE TRUNCATE ON ${s}.events FOR EACH STATEMENT EXECUTE FUNCTION ${s}.refuse_change();
`
}

/** version of functionsSql: a store made by an earlier one has its functions replaced on open */
const FUNCTIONS_VERSION = '2'

/** The append functions. Version 2: an append's events share one time, taken once the writers'
 * lock is held (so times follow positions) and cut to milliseconds (what a read returns), and an
 * append that wrote returns it, so that this process's subscriptions are given its events as
 * appended instead of reading them back. The signatures are those of version 1. */
function functionsSql(s: string, lockKey: number): string {
  return `
-- The append path only probes indexes (enable_seqscan off): a generic plan made while the table was
-- small would otherwise keep scanning it; and generic plans, because re-planning each call costs
-- more than the work. Events arrive as parallel arrays, so no JSON envelope is parsed.

-- One append: the idempotency check (as classifyRetry in port.ts), the expected-revision check,
-- then the insert. p_expected is 'any', 'no_stream', 'stream_exists' or a revision as text.
CREATE OR REPLACE FUNCTION ${s}.append_events(p_stream text, p_expected text, p_ids uuid[], p_types text[], p_data json[], p_metadata json[],
  OUT next_revision integer, OUT last_position bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
  v_n integer := cardinality(p_ids);
  v_current integer;
  v_head bigint;
  v_found integer;
  v_in_stream integer;
  v_offset_min bigint;
  v_offset_max bigint;
  v_now timestamptz;
BEGIN
  -- serialise writers: position order is commit order (the commit-order gap)
  PERFORM pg_advisory_xact_lock(${LOCK_CLASS + 1}, ${lockKey});
  v_now := date_trunc('milliseconds', clock_timestamp());
  SELECT coalesce((SELECT max(revision) FROM ${s}.events WHERE stream = p_stream), -1), coalesce((SELECT max(position) FROM ${s}.events), 0)
    INTO v_current, v_head;
  -- where the ids are stored already; revision - index is the same for all of a consecutive run
  SELECT count(*), count(*) FILTER (WHERE stream = p_stream), min(revision - array_position(p_ids, id)), max(revision - array_position(p_ids, id)), max(revision), max(position)
    INTO v_found, v_in_stream, v_offset_min, v_offset_max, next_revision, last_position
    FROM ${s}.events WHERE id = ANY(p_ids);
  IF v_found > 0 THEN
    IF v_found < v_n OR v_in_stream < v_n OR v_offset_min <> v_offset_max THEN
      RAISE EXCEPTION USING ERRCODE = '${DUPLICATE}',
        MESSAGE = format('append to %s: some event ids are already stored, others are not, or they are stored elsewhere', p_stream);
    END IF;
    -- a retry whose acknowledgement was lost: the ids were stored right after p_expected
    IF NOT (p_expected IN ('any', 'stream_exists') OR (p_expected = 'no_stream' AND v_offset_min = -1) OR p_expected = v_offset_min::text) THEN
      RAISE EXCEPTION USING ERRCODE = '${WRONG_REVISION}', MESSAGE = 'wrong expected revision', DETAIL = v_current::text,
        HINT = 'event ids already stored at another revision';
    END IF;
    RETURN;
  END IF;
  IF NOT (p_expected = 'any' OR (p_expected = 'no_stream' AND v_current < 0) OR (p_expected = 'stream_exists' AND v_current >= 0) OR p_expected = v_current::text) THEN
    RAISE EXCEPTION USING ERRCODE = '${WRONG_REVISION}', MESSAGE = 'wrong expected revision', DETAIL = v_current::text;
  END IF;
  INSERT INTO ${s}.events (position, id, stream, revision, type, time, data, metadata)
    SELECT v_head + k, p_ids[k], p_stream, v_current + k, p_types[k], v_now, p_data[k], p_metadata[k]
    FROM generate_series(1, v_n) AS k;
  next_revision := v_current + v_n;
  last_position := v_head + v_n;
END $$;

-- Group commit: several appends in one transaction, each with its own outcome:
-- [next_revision, last_position, time in ms since the epoch] when it wrote, [next_revision,
-- last_position] when its events were already stored (a retry), or {"code", "message", "detail",
-- "hint"}. Append i has p_counts[i] events, which follow those of the appends before it in the
-- event arrays.
CREATE OR REPLACE FUNCTION ${s}.append_batch(p_streams text[], p_expected text[], p_counts integer[], p_ids uuid[], p_types text[], p_data json[], p_metadata json[])
RETURNS json
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
  v_result json;
  v_results json[] := '{}';
  v_head bigint;
  v_lo integer := 1;
  v_hi integer;
  r record;
  v_detail text;
  v_hint text;
  v_now timestamptz;
  v_time timestamptz;
BEGIN
  PERFORM pg_advisory_xact_lock(${LOCK_CLASS + 1}, ${lockKey});
  v_now := date_trunc('milliseconds', clock_timestamp());
  -- Fast path, the common case: distinct streams and only new event ids. Then an append's outcome
  -- depends only on its own stream's revision, and one statement decides and writes them all.
  IF (SELECT count(DISTINCT x) FROM unnest(p_streams) x) = cardinality(p_streams)
     AND (SELECT count(DISTINCT x) FROM unnest(p_ids) x) = cardinality(p_ids)
     AND NOT EXISTS (SELECT 1 FROM ${s}.events WHERE id = ANY(p_ids)) THEN
    SELECT coalesce(max(position), 0) INTO v_head FROM ${s}.events;
    WITH appends AS (
      SELECT i, stream, expected, n, sum(n) OVER (ORDER BY i) - n AS before,
             coalesce((SELECT max(revision) FROM ${s}.events e WHERE e.stream = t.stream), -1) AS current
        FROM unnest(p_streams, p_expected, p_counts) WITH ORDINALITY AS t(stream, expected, n, i)
    ), decided AS (
      -- the expected-revision check of append_events
      SELECT *, (expected = 'any' OR (expected = 'no_stream' AND current < 0) OR (expected = 'stream_exists' AND current >= 0) OR expected = current::text) AS ok
        FROM appends
    ), placed AS (
      SELECT *, v_head + sum(n) FILTER (WHERE ok) OVER (ORDER BY i) AS last_position FROM decided
    ), written AS (
      INSERT INTO ${s}.events (position, id, stream, revision, type, time, data, metadata)
        SELECT p.last_position - p.n + k, p_ids[p.before + k], p.stream, p.current + k, p_types[p.before + k], v_now, p_data[p.before + k], p_metadata[p.before + k]
          FROM placed p, generate_series(1, p.n) AS k
         WHERE p.ok
    )
    SELECT json_agg(CASE WHEN ok THEN json_build_array(current + n, last_position, (extract(epoch FROM v_now) * 1000)::bigint)
                    ELSE json_build_object('code', '${WRONG_REVISION}', 'message', 'wrong expected revision', 'detail', current::text) END ORDER BY i)
      INTO v_result FROM placed;
    RETURN v_result;
  END IF;
  -- Otherwise one append after the other, each in a sub-block that undoes only its own failure.
  FOR i IN 1 .. cardinality(p_streams) LOOP
    v_hi := v_lo + p_counts[i] - 1;
    BEGIN
      SELECT coalesce(max(position), 0) INTO v_head FROM ${s}.events;
      SELECT * INTO r FROM ${s}.append_events(p_streams[i], p_expected[i], p_ids[v_lo:v_hi], p_types[v_lo:v_hi], p_data[v_lo:v_hi], p_metadata[v_lo:v_hi]);
      IF r.last_position > v_head THEN
        SELECT time INTO v_time FROM ${s}.events WHERE position = r.last_position;
        v_results := v_results || json_build_array(r.next_revision, r.last_position, (extract(epoch FROM v_time) * 1000)::bigint);
      ELSE
        v_results := v_results || json_build_array(r.next_revision, r.last_position);
      END IF;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
      v_results := v_results || json_build_object('code', SQLSTATE, 'message', SQLERRM, 'detail', v_detail, 'hint', v_hint);
    END;
    v_lo := v_hi + 1;
  END LOOP;
  RETURN array_to_json(v_results);
END $$;
`
}

interface Row {
  position: string
  id: string
  stream: string
  revision: number
  type: string
  time: Date
  data: unknown
  metadata: RecordedEvent['metadata']
}

const COLUMNS = 'position, id, stream, revision, type, time, data, metadata'

const toRecorded = (r: Row): RecordedEvent => ({
  id: r.id,
  type: r.type,
  stream: r.stream,
  revision: r.revision,
  position: Number(r.position),
  time: r.time.toISOString(),
  data: r.data,
  metadata: r.metadata,
})

/** an event of an append this process committed, as its subscriptions are given it */
class CommittedEvent implements AppendedEvent {
  private event: RecordedEvent | undefined

  constructor(
    private readonly prepared: PreparedEvent,
    private readonly json: readonly [string, string],
    readonly stream: string,
    private readonly revision: number,
    readonly position: number,
    private readonly ms: number,
  ) {}

  get type(): string {
    return this.prepared.type
  }

  recorded(): RecordedEvent {
    // parsed from the text sent, as a read would parse the json column
    return (this.event ??= {
      id: this.prepared.id,
      type: this.prepared.type,
      stream: this.stream,
      revision: this.revision,
      position: this.position,
      time: new Date(this.ms).toISOString(),
      data: JSON.parse(this.json[0]) as unknown,
      metadata: JSON.parse(this.json[1]) as RecordedEvent['metadata'],
    })
  }
}

interface PendingAppend {
  stream: string
  events: PreparedEvent[]
  /** [data, metadata] of each event as JSON text, made before queueing so a bad value fails only its own append */
  json: Array<[string, string]>
  expected: ExpectedRevision
  resolve: (r: AppendResult) => void
  reject: (e: unknown) => void
}

interface SqlError {
  code?: string
  message: string
  detail?: string | null
  hint?: string | null
}

function toJson(value: unknown, type: string): string {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (err) {
    throw new KennelError('KENNEL_ERR_VALIDATION', `event ${type} cannot be stored as JSON: ${(err as Error).message}`)
  }
  if (typeof text !== 'string')
    throw new KennelError('KENNEL_ERR_VALIDATION', `event ${type}: data and metadata must be JSON values`)
  return text
}

/** Map an error raised by append_events to the port's typed errors. */
function appendError(a: PendingAppend, e: SqlError): Error {
  if (e.code === WRONG_REVISION) {
    const current = Number(e.detail)
    return new WrongExpectedRevisionError(
      a.stream,
      a.expected,
      current < 0 ? 'no_stream' : current,
      e.hint ?? undefined,
    )
  }
  if (e.code === DUPLICATE) return new KennelError('KENNEL_ERR_DUPLICATE_EVENT', e.message, { stream: a.stream })
  return new KennelError(
    'KENNEL_ERR_INTERNAL',
    `append to ${a.stream} failed in PostgreSQL: ${e.message} (${e.code ?? 'no SQLSTATE'})`,
    { stream: a.stream },
  )
}

/** `postgres://…?schema=name`: the schema parameter is ours, not libpq's, so it is removed. */
function parseUrl(url: string): { connectionString: string; schema: string } {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new KennelError('KENNEL_ERR_EVENTSTORE_URL', 'invalid PostgreSQL URL')
  }
  const schema = u.searchParams.get('schema') ?? 'kennel'
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new KennelError(
      'KENNEL_ERR_EVENTSTORE_URL',
      `invalid schema ${JSON.stringify(schema)}: lower-case letters, digits and _, at most 63`,
    )
  }
  u.searchParams.delete('schema')
  return { connectionString: u.toString(), schema }
}

export interface PostgresOptions extends OpenOptions {
  /** connections in the pool: appends use at most two, readers and subscriptions the rest */
  poolSize?: number
}

export async function openPostgresEventStore(url: string, options: PostgresOptions): Promise<EventStore> {
  const { connectionString, schema } = parseUrl(url)
  // the name lets an operator (and the fault tests) tell this process's connections apart; an
  // application_name in the URL takes precedence
  const pool = openPool({ connectionString, max: options.poolSize ?? 8, application_name: `kennel:${schema}` })
  const lockKey = createHash('sha256').update(schema).digest().readInt32BE(0)
  try {
    const environment = await initialise(pool, schema, lockKey, options.environment)
    const head = await query<{ head: string }>(pool, 'reading the head position', {
      text: `SELECT coalesce(max(position), 0) AS head FROM "${schema}".events`,
    })
    return new PostgresEventStore(pool, `"${schema}"`, environment, Number(head.rows[0]!.head))
  } catch (err) {
    await pool.end()
    if (err instanceof KennelError) throw err
    const code = (err as { code?: string }).code
    throw new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `cannot open the PostgreSQL event store (schema ${schema}): ${(err as Error).message}${code ? ` (${code})` : ''}`,
      { schema },
      { cause: err },
    )
  }
}

/** Create the schema on first use and check the environment (R8). DDL is transactional and the
 * advisory lock makes concurrent openers take turns, so two processes starting at once are safe. */
async function initialise(pool: pg.Pool, schema: string, lockKey: number, environment: string): Promise<string> {
  const s = `"${schema}"`
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_CLASS, lockKey])
    const { rows } = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${s}.kennel_meta`])
    if (rows[0]!.t === null) await client.query(schemaSql(s))
    const functions = await client.query<{ value: string }>(
      `SELECT value FROM ${s}.kennel_meta WHERE key = 'functions'`,
    )
    if (functions.rows[0]?.value !== FUNCTIONS_VERSION) {
      await client.query(functionsSql(s, lockKey))
      await client.query(
        `INSERT INTO ${s}.kennel_meta (key, value) VALUES ('functions', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
        [FUNCTIONS_VERSION],
      )
    }
    const stored = await client.query<{ value: string }>(`SELECT value FROM ${s}.kennel_meta WHERE key = 'environment'`)
    const value = stored.rows[0]?.value
    if (value === undefined) {
      await client.query(`INSERT INTO ${s}.kennel_meta (key, value) VALUES ('environment', $1), ('created', $2)`, [
        environment,
        new Date().toISOString(),
      ])
    } else if (value !== environment) {
      throw new KennelError(
        'KENNEL_ERR_ENVIRONMENT_MISMATCH',
        `event store schema ${schema} was created by a ${value} environment; refusing to open it as ${environment} (R8)`,
        { stored: value, opening: environment },
      )
    }
    await client.query('COMMIT')
    return value ?? environment
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    client.release()
  }
}

class PostgresEventStore implements EventStore {
  readonly kind = 'postgres' as const
  private pending: PendingAppend[] = []
  private inFlight = new Set<Promise<void>>()
  private flushScheduled = false
  private closed = false
  private readonly feed: LiveFeed
  private polling = false

  constructor(
    private readonly pool: pg.Pool,
    private readonly s: string,
    readonly environment: string,
    head: number,
  ) {
    const source = {
      readRange: (after: number, upTo: number, max: number, filter: EventFilter | undefined) => {
        this.assertOpen()
        return this.read(false, after, max, filter, upTo)
      },
      head: () => this.headPosition(),
    }
    this.feed = new LiveFeed(source, head, { intervalMs: POLL_MS, tick: () => this.pollHead() })
  }

  append(stream: string, events: readonly NewEvent[], options: AppendOptions = {}): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed'))
    const expected = options.expectedRevision ?? 'any'
    let prepared: PreparedEvent[]
    let json: Array<[string, string]>
    try {
      prepared = prepareAppend(stream, events, expected)
      json = prepared.map((e) => [toJson(e.data, e.type), toJson(e.metadata, e.type)])
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ stream, events: prepared, json, expected, resolve, reject })
      this.scheduleFlush()
    })
  }

  /** Appends made in the same turn of the event loop, or while both batches are in flight, share
   * the next batch. */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.inFlight.size >= IN_FLIGHT || this.pending.length === 0) return
    this.flushScheduled = true
    setImmediate(() => {
      this.flushScheduled = false
      const batch = this.pending.splice(0, MAX_BATCH)
      if (batch.length === 0) return
      const done: Promise<void> = this.commit(batch).finally(() => {
        this.inFlight.delete(done)
        this.scheduleFlush()
      })
      this.inFlight.add(done)
      this.scheduleFlush()
    })
  }

  private async commit(batch: PendingAppend[]): Promise<void> {
    const columns = {
      streams: [] as string[],
      expected: [] as string[],
      counts: [] as number[],
      ids: [] as string[],
      types: [] as string[],
      data: [] as string[],
      metadata: [] as string[],
    }
    for (const a of batch) {
      columns.streams.push(a.stream)
      columns.expected.push(String(a.expected))
      columns.counts.push(a.events.length)
      a.events.forEach((e, i) => {
        columns.ids.push(e.id)
        columns.types.push(e.type)
        columns.data.push(a.json[i]![0])
        columns.metadata.push(a.json[i]![1])
      })
    }
    let results: Array<[number, number] | [number, number, number] | SqlError>
    const ticket = this.feed.sending()
    try {
      const { rows } = await query<{ r: typeof results }>(
        this.pool,
        `appending ${batch.length === 1 ? `to ${batch[0]!.stream}` : `${batch.length} appends (the first to ${batch[0]!.stream})`}`,
        {
          name: 'append_batch',
          text: `SELECT ${this.s}.append_batch($1::text[], $2::text[], $3::integer[], $4::uuid[], $5::text[], $6::json[], $7::json[]) AS r`,
          values: Object.values(columns),
        },
        'the append may or may not have been committed; a retry with the same event ids is safe',
      )
      results = rows[0]!.r
    } catch (err) {
      // the outcome is unknown (the commit may have happened): a retry with the same ids is safe
      for (const a of batch) a.reject(err)
      this.feed.settled(ticket, [])
      this.feed.poke()
      return
    }
    const written: CommittedEvent[] = []
    try {
      batch.forEach((a, i) => {
        const r = results[i]!
        if (!Array.isArray(r)) return a.reject(appendError(a, r))
        a.resolve({ nextExpectedRevision: r[0], position: r[1] })
        // [revision, position, time] when it wrote: its events are consecutive, all at that time
        if (r.length < 3) return
        const n = a.events.length
        a.events.forEach((e, k) =>
          written.push(new CommittedEvent(e, a.json[k]!, a.stream, r[0] - n + 1 + k, r[1] - n + 1 + k, r[2]!)),
        )
      })
    } finally {
      // whatever happened above, the feed must not wait for this batch for ever
      this.feed.settled(ticket, written)
    }
  }

  async readStream(stream: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen()
    const backwards = options.direction === 'backwards'
    const from = options.fromRevision ?? (backwards ? 2 ** 31 - 1 : 0)
    const { rows } = await query<Row>(this.pool, `reading stream ${stream}`, {
      text: `SELECT ${COLUMNS} FROM ${this.s}.events WHERE stream = $1 AND revision ${backwards ? '<=' : '>='} $2 ORDER BY revision ${backwards ? 'DESC' : 'ASC'} LIMIT $3`,
      values: [stream, from, options.maxCount ?? null],
    })
    return rows.map(toRecorded)
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen()
    return this.read(
      options.direction === 'backwards',
      options.direction === 'backwards' ? options.before : options.after,
      options.maxCount,
      options.filter,
    )
  }

  /** `upTo`: forwards, only events with position <= upTo */
  private async read(
    backwards: boolean,
    bound: number | undefined,
    max: number | undefined,
    filter: EventFilter | undefined,
    upTo = Number.MAX_SAFE_INTEGER,
  ): Promise<RecordedEvent[]> {
    const { rows } = await query<Row>(this.pool, 'reading events', {
      // the statement text depends only on the direction and the filter's shape: name it so each connection plans it once
      name: `read-${backwards ? 'b' : 'f'}-${filter?.types ? 't' : ''}${filter?.streamPrefixes ? 'p' : ''}`,
      text: `SELECT ${COLUMNS} FROM ${this.s}.events
        WHERE position ${backwards ? '<' : '>'} $1 ${backwards ? '' : 'AND position <= $5'} AND ($3::text[] IS NULL OR type = ANY($3)) AND ($4::text[] IS NULL OR stream ^@ ANY($4))
        ORDER BY position ${backwards ? 'DESC' : 'ASC'} LIMIT $2`,
      values: [
        bound ?? (backwards ? Number.MAX_SAFE_INTEGER : 0),
        max ?? null,
        filter?.types ?? null,
        filter?.streamPrefixes ?? null,
        ...(backwards ? [] : [upTo]),
      ],
    })
    return rows.map(toRecorded)
  }

  subscribe(options: SubscribeOptions): Subscription {
    this.assertOpen()
    return this.feed.subscribe(options)
  }

  /** Notice commits by other processes with one cheap query per interval, not a NOTIFY per
   * append (PostgreSQL takes a database-wide lock at commit for a transaction that sent
   * NOTIFY, which serialises every commit). A failed poll pokes the feed too,
   * so that its next read reports the failure. */
  private pollHead(): void {
    if (this.polling) return
    this.polling = true
    this.headPosition()
      .then(
        (head) => {
          if (head > this.feed.position) this.feed.poke()
        },
        () => this.feed.poke(),
      )
      .finally(() => (this.polling = false))
  }

  async headPosition(): Promise<number> {
    this.assertOpen()
    const { rows } = await query<{ head: string }>(this.pool, 'reading the head position', {
      name: 'head',
      text: `SELECT coalesce(max(position), 0) AS head FROM ${this.s}.events`,
    })
    return Number(rows[0]!.head)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    while (this.pending.length > 0 || this.inFlight.size > 0 || this.flushScheduled) {
      await Promise.all(this.inFlight)
      await new Promise((r) => setImmediate(r))
    }
    await this.feed.stopAll()
    await this.pool.end()
  }

  private assertOpen(): void {
    if (this.closed) throw new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed')
  }
}
