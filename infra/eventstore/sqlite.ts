import fs from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import Database from 'better-sqlite3'
import { KennelError } from '../errors.ts'
import { CanonicalTextEvent, storedJson } from './canonical-json.ts'
import {
  type AppendOptions,
  type EventMetadata,
  type AppendResult,
  type EventFilter,
  type EventStore,
  type NewEvent,
  type OpenOptions,
  type PreparedEvent,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type StoredLocation,
  type SubscribeOptions,
  type Subscription,
  checkExpectedRevision,
  classifyRetry,
  prepareAppend,
} from './port.ts'
import { preparePrivateDatabase } from './sqlite-file.ts'
import { type AppendedEvent, LiveFeed } from './subscription.ts'

// Embedded event store: one SQLite file in WAL mode, no network listener (R7).
//
// Writes run on a writer thread (sqlite-writer.js) that owns the only write connection:
// better-sqlite3 is synchronous, and an fsync under load (p99 16-60 ms here) would otherwise stop
// the whole event loop. Appends are validated and serialised here, queued, and sent as one batch
// (group commit: one IMMEDIATE transaction, one fsync with synchronous=FULL); each keeps its own
// expected-revision and idempotency outcome. While one batch commits, the next accumulates; at
// most two are in flight. An append resolves only after the writer's COMMIT returned, so an
// acknowledged append survives kill -9 and power loss. This thread keeps a read connection
// (query_only) for reads: in WAL mode it sees every commit the writer has acknowledged
// (read-your-writes). Subscriptions are fed the events of each acknowledged batch as they were
// appended (subscription.ts), and read from this connection only what other processes wrote,
// noticed through the PRAGMA data_version poll or a gap before an acknowledged batch.

const SCHEMA = `
CREATE TABLE IF NOT EXISTS kennel_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS events (
  position INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  stream TEXT NOT NULL,
  revision INTEGER NOT NULL,
  type TEXT NOT NULL,
  time TEXT NOT NULL,
  data TEXT NOT NULL,
  metadata TEXT NOT NULL,
  UNIQUE (stream, revision)
) STRICT;
CREATE INDEX IF NOT EXISTS events_type ON events (type, position);
CREATE TRIGGER IF NOT EXISTS events_are_immutable BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TRIGGER IF NOT EXISTS events_are_append_only BEFORE DELETE ON events
  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
`

/** rows are read as arrays: a replay materialises millions of them */
const COLUMNS = 'position, id, stream, revision, type, time, data, metadata'
type Row = [
  position: number,
  id: string,
  stream: string,
  revision: number,
  type: string,
  time: string,
  data: string,
  metadata: string,
]

/** An event serialised before it is queued, so a bad value fails its own append, not a batch.
 * Once its batch is committed it knows where it was written, and is what the subscriptions of
 * this process are given: parsed once, when one of them wants it. */
class PendingEvent implements AppendedEvent {
  stream = ''
  revision = 0
  position = 0
  time = ''
  private event: RecordedEvent | undefined

  constructor(
    readonly id: string,
    readonly type: string,
    readonly data: string,
    readonly metadata: string,
  ) {}

  recorded(): RecordedEvent {
    // the texts were made here by storedJson: canonical, whatever the store's json mark says
    return (this.event ??= new CanonicalTextEvent(
      this.id,
      this.type,
      this.stream,
      this.revision,
      this.position,
      this.time,
      JSON.parse(this.data),
      JSON.parse(this.metadata) as EventMetadata,
      this.data,
      this.metadata,
    ))
  }
}

type Expected = AppendOptions['expectedRevision'] & {}

interface PendingAppend {
  stream: string
  events: PendingEvent[]
  expected: Expected
  resolve: (r: AppendResult) => void
  reject: (e: unknown) => void
}

// The writer thread's protocol (sqlite-writer.js refers to these types in JSDoc).

export interface WriterData {
  file: string
}

export type WriterRequest =
  | {
      type: 'batch'
      batch: number
      /** per append */
      streams: string[]
      expected: Expected[]
      counts: number[]
      /** per event, flattened: id, type, data (JSON), metadata (JSON) */
      events: string[]
    }
  | { type: 'close' }

/** the outcome of an append that was not simply written */
export type WriterOutcome =
  | { index: number; kind: 'retry'; current: number; stored: Array<StoredLocation | null> }
  | { index: number; kind: 'expected'; current: number }
  | { index: number; kind: 'duplicate' }
  | { index: number; kind: 'error'; message: string; code: string | undefined }

export type WriterReply =
  | {
      type: 'done'
      batch: number
      /** [revision, position] per append; NaN for those listed in outcomes */
      ok: Float64Array
      outcomes: WriterOutcome[]
      written: number
      /** the time recorded in every event of the batch */
      time: string
    }
  | { type: 'failed'; batch: number; message: string; code: string | undefined }
  /** the write connection is open */
  | { type: 'ready' }

interface InFlightBatch {
  batch: number
  /** the live feed's ticket for this batch */
  ticket: number
  appends: PendingAppend[]
  /** resolves once every append of the batch is settled (acknowledged, or rejected by a crash) */
  settled: Promise<void>
  done: () => void
}

interface WriterThread {
  worker: Worker
  /** in the order sent; the writer replies in the same order */
  inFlight: InFlightBatch[]
  dead: boolean
  closing: boolean
  exited: Promise<void>
  /** resolves when the writer has opened its connection; rejects if it stops before */
  ready: Promise<void>
  stopped?: (cause: Error) => void
}

/** batches in flight at once: one committing, one waiting in the writer's queue */
const MAX_IN_FLIGHT = 2

const WRITER_URL = new URL('./sqlite-writer.js', import.meta.url)

/** For tests: the writer thread of a SQLite event store, if it is running. */
export const writerThreadOf = (store: EventStore): Worker | undefined =>
  store instanceof SqliteEventStore ? store.writerThread : undefined

const toRecorded = (r: Row): RecordedEvent => ({
  id: r[1],
  type: r[4],
  stream: r[2],
  revision: r[3],
  position: r[0],
  time: r[5],
  data: parseColumn(r[6], 'data', r[0]),
  metadata: parseColumn(r[7], 'metadata', r[0]) as RecordedEvent['metadata'],
})

/** the store only ever writes JSON here: text that is not JSON was written by something else */
function parseColumn(text: string, column: string, position: number): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new KennelError(
      'KENNEL_ERR_EVENT_CORRUPT',
      `the stored event at position ${position} has ${column} that is not JSON: the store was changed outside kennel`,
      { position },
    )
  }
}

export interface SqliteOptions extends OpenOptions {
  /** interval at which commits by other processes are noticed (PRAGMA data_version) */
  pollMs?: number
}

export async function openSqliteEventStore(file: string, options: SqliteOptions): Promise<EventStore> {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  preparePrivateDatabase(file)
  const db = new Database(file)
  let environment: string
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    db.pragma('busy_timeout = 10000')
    db.pragma('foreign_keys = ON')
    environment = initialise(db, file, options.environment)
    // from here on this connection only reads; every write goes through the writer thread
    db.pragma('query_only = ON')
  } catch (err) {
    db.close()
    throw err
  }
  const store = new SqliteEventStore(file, db, environment, options.pollMs ?? 10, options.appendVia)
  // wait for the writer's connection, so the first append does not pay for the thread's start
  // (often a fire-and-forget security event) and a writer that cannot start fails the open
  try {
    await store.writerReady()
  } catch (err) {
    await store.close()
    throw new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `event store ${file}: the writer thread did not start: ${(err as Error).message}`,
    )
  }
  return store
}

function initialise(db: Database.Database, file: string, environment: string): string {
  return db
    .transaction(() => {
      db.exec(SCHEMA)
      const row = db.prepare('SELECT value FROM kennel_meta WHERE key = ?').get('environment') as
        | { value: string }
        | undefined
      if (row === undefined) {
        // every row of a store created with json=canonical holds data and metadata as storedJson
        // text, so the audit log can hash it unparsed (projections/audit/catch-up-thread.ts)
        db.prepare('INSERT INTO kennel_meta (key, value) VALUES (?, ?), (?, ?), (?, ?)').run(
          'environment',
          environment,
          'created',
          new Date().toISOString(),
          'json',
          'canonical',
        )
        return environment
      }
      if (row.value !== environment) {
        throw new KennelError(
          'KENNEL_ERR_ENVIRONMENT_MISMATCH',
          `event store ${file} was created by a ${row.value} environment; refusing to open it as ${environment} (R8)`,
          { stored: row.value, opening: environment },
        )
      }
      return row.value
    })
    .immediate()
}

class SqliteEventStore implements EventStore {
  readonly kind = 'sqlite' as const
  private pending: PendingAppend[] = []
  private flushScheduled = false
  private closed = false
  private writer: WriterThread | undefined
  private batchSeq = 0
  private readonly feed: LiveFeed
  private dataVersion: number
  private readonly statements = new Map<string, Database.Statement>()

  private readonly stmt

  constructor(
    readonly file: string,
    private readonly db: Database.Database,
    readonly environment: string,
    pollMs: number,
    private readonly appendVia?: OpenOptions['appendVia'],
  ) {
    this.stmt = {
      head: db.prepare('SELECT coalesce(max(position), 0) FROM events').pluck(),
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
    }
    this.dataVersion = this.stmt.dataVersion.get() as number
    // other processes' commits (the CLI appending while the server runs) move data_version, and
    // so do ours: the feed reads only what no acknowledgement brought
    const source = {
      readRange: async (after: number, upTo: number, max: number, filter: EventFilter | undefined) => {
        this.assertOpen()
        return this.readAllSync({ after, maxCount: max, filter }, upTo)
      },
      head: async () => {
        this.assertOpen()
        return this.stmt.head.get() as number
      },
    }
    this.feed = new LiveFeed(source, this.stmt.head.get() as number, {
      intervalMs: pollMs,
      tick: () => {
        const version = this.stmt.dataVersion.get() as number
        if (version === this.dataVersion) return
        this.dataVersion = version
        this.feed.poke()
      },
    })
    // a handle whose appends go to another handle has no writer of its own
    if (!appendVia) this.writer = this.startWriter()
  }

  writerReady(): Promise<void> {
    return this.writer?.ready ?? Promise.resolve()
  }

  get writerThread(): Worker | undefined {
    return this.writer?.worker
  }

  append(stream: string, events: readonly NewEvent[], options: AppendOptions = {}): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed'))
    if (this.appendVia) return this.appendVia(stream, events, options)
    const expected = options.expectedRevision ?? 'any'
    let prepared: PendingEvent[]
    try {
      prepared = prepareAppend(stream, events, expected).map(serialise)
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ stream, events: prepared, expected, resolve, reject })
      if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(() => {
          this.flushScheduled = false
          this.flush()
        })
      }
    })
  }

  /** Send pending appends to the writer while it has room; the rest wait for an acknowledgement. */
  private flush(): void {
    while (this.pending.length > 0) {
      const writer = (this.writer ??= this.startWriter())
      if (writer.inFlight.length >= MAX_IN_FLIGHT) return
      const appends = this.pending
      this.pending = []
      this.send(writer, appends)
    }
  }

  private send(writer: WriterThread, appends: PendingAppend[]): void {
    const request: WriterRequest & { type: 'batch' } = {
      type: 'batch',
      batch: ++this.batchSeq,
      streams: [],
      expected: [],
      counts: [],
      events: [],
    }
    for (const a of appends) {
      request.streams.push(a.stream)
      request.expected.push(a.expected)
      request.counts.push(a.events.length)
      for (const e of a.events) request.events.push(e.id, e.type, e.data, e.metadata)
    }
    let done!: () => void
    const settled = new Promise<void>((r) => (done = r))
    writer.inFlight.push({ batch: request.batch, ticket: this.feed.sending(), appends, settled, done })
    // keep the process alive while appends await their acknowledgement, and only then
    if (writer.inFlight.length === 1) writer.worker.ref()
    writer.worker.postMessage(request)
  }

  private startWriter(): WriterThread {
    const worker = new Worker(WRITER_URL, {
      workerData: { file: this.file } satisfies WriterData,
      // plain JavaScript: no loader flags needed, whatever started this process
      execArgv: [],
      name: 'kennel-eventstore-writer',
    })
    worker.unref()
    let exited!: () => void
    let ready!: () => void
    let failed!: (err: Error) => void
    const writer: WriterThread = {
      worker,
      inFlight: [],
      dead: false,
      closing: false,
      exited: new Promise((r) => (exited = r)),
      ready: new Promise((resolve, reject) => ((ready = resolve), (failed = reject))),
    }
    writer.ready.catch(() => {}) // also reported to every append sent to it
    writer.stopped = failed
    worker.on('message', (reply: WriterReply) => (reply.type === 'ready' ? ready() : this.acknowledged(writer, reply)))
    worker.on('error', (err) => this.writerStopped(writer, err))
    worker.on('messageerror', (err) => {
      this.writerStopped(writer, err)
      void worker.terminate()
    })
    worker.on('exit', (code) => {
      if (!(writer.closing && code === 0)) this.writerStopped(writer, new Error(`exited with code ${code}`))
      exited()
    })
    return writer
  }

  private acknowledged(writer: WriterThread, reply: Exclude<WriterReply, { type: 'ready' }>): void {
    if (writer.dead) return
    const batch = writer.inFlight.shift()
    if (!batch || batch.batch !== reply.batch) {
      this.writerStopped(writer, new Error(`acknowledged batch ${reply.batch} out of order`))
      void writer.worker.terminate()
      return
    }
    if (writer.inFlight.length === 0) writer.worker.unref()
    // keep the writer busy: what accumulated during this commit goes out before anyone is woken
    this.flush()
    if (reply.type === 'failed') {
      const error = new KennelError(
        'KENNEL_ERR_UNAVAILABLE',
        `event store commit failed, nothing of this append was stored: ${reply.message}`,
        { sqliteCode: reply.code },
      )
      for (const a of batch.appends) a.reject(error)
      batch.done()
      this.feed.settled(batch.ticket, [])
      return
    }
    const written: PendingEvent[] = []
    let special = 0
    for (let i = 0; i < batch.appends.length; i++) {
      const a = batch.appends[i]!
      const o = reply.outcomes[special]
      if (o?.index === i) {
        special++
        try {
          a.resolve(settleOutcome(a, o))
        } catch (err) {
          a.reject(err)
        }
        continue
      }
      const revision = reply.ok[2 * i]!
      const position = reply.ok[2 * i + 1]!
      a.resolve({ nextExpectedRevision: revision, position })
      // one transaction, one writer: an append's events have consecutive positions
      const n = a.events.length
      for (let k = 0; k < n; k++) {
        const e = a.events[k]!
        e.stream = a.stream
        e.revision = revision - n + 1 + k
        e.position = position - n + 1 + k
        e.time = reply.time
        written.push(e)
      }
    }
    batch.done()
    this.feed.settled(batch.ticket, written)
  }

  /** The writer crashed or stopped: everything sent to it has an unknown outcome. */
  private writerStopped(writer: WriterThread, cause: Error): void {
    if (writer.dead) return
    writer.dead = true
    writer.stopped?.(cause)
    if (this.writer === writer) this.writer = undefined
    const lost = writer.inFlight
    writer.inFlight = []
    writer.worker.unref()
    const count = lost.reduce((n, b) => n + b.appends.length, 0)
    const error = new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `the event store's writer thread stopped (${cause.message}); ${count} append(s) in flight may or may not be stored: retrying them with the same event ids is safe`,
      { cause: cause.message },
    )
    for (const b of lost) {
      for (const a of b.appends) a.reject(error)
      b.done()
      this.feed.settled(b.ticket, [])
    }
    // some of those may have committed before the crash
    if (count > 0) this.feed.poke()
    // appends not yet sent go to a new writer
    if (this.pending.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => {
        this.flushScheduled = false
        this.flush()
      })
    }
  }

  async readStream(stream: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen()
    const backwards = options.direction === 'backwards'
    const limit = options.maxCount ?? -1
    const from = options.fromRevision
    const sql = backwards
      ? `SELECT ${COLUMNS} FROM events WHERE stream = ? ${from !== undefined ? 'AND revision <= ?' : ''} ORDER BY revision DESC LIMIT ?`
      : `SELECT ${COLUMNS} FROM events WHERE stream = ? AND revision >= ? ORDER BY revision ASC LIMIT ?`
    const args = backwards ? (from !== undefined ? [stream, from, limit] : [stream, limit]) : [stream, from ?? 0, limit]
    return (this.prepared(sql).all(...args) as Row[]).map(toRecorded)
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen()
    return this.readAllSync(options)
  }

  /** `upTo`: forwards, only events with position <= upTo */
  private readAllSync(options: ReadAllOptions, upTo = Number.MAX_SAFE_INTEGER): RecordedEvent[] {
    const types = options.filter?.types
    if (types !== undefined && types.length > 1) return this.readByTypes(options, types, upTo)
    const backwards = options.direction === 'backwards'
    const [where, args] = filterSql(options.filter)
    const bound = backwards ? 'position < ?' : 'position > ? AND position <= ?'
    const bounds = backwards ? [options.before ?? Number.MAX_SAFE_INTEGER] : [options.after ?? 0, upTo]
    const sql = `SELECT ${COLUMNS} FROM events WHERE ${bound}${where} ORDER BY position ${backwards ? 'DESC' : 'ASC'} LIMIT ?`
    return (this.prepared(sql).all(...bounds, ...args, options.maxCount ?? -1) as Row[]).map(toRecorded)
  }

  /** Several types: each one's positions read along the events_type index (no row is touched
   * unless a stream prefix must be checked), merged, then exactly those rows read by position.
   * One query with `type IN (…)` would sort every matching event after the bound to return a
   * few. Once `maxCount` positions are held, the next type is read only up to the last of them. */
  private readByTypes(options: ReadAllOptions, types: readonly string[], upTo: number): RecordedEvent[] {
    const backwards = options.direction === 'backwards'
    const limit = options.maxCount ?? -1
    if (limit === 0) return []
    const [where, args] = filterSql({ ...options.filter, types: undefined })
    const positionsOf = this.prepared(
      `SELECT position FROM events WHERE type = ? AND position > ? AND position < ?${where} ORDER BY position ${backwards ? 'DESC' : 'ASC'} LIMIT ?`,
    )
    let lower = backwards ? 0 : (options.after ?? 0)
    let upper = backwards ? (options.before ?? Number.MAX_SAFE_INTEGER) : upTo + 1
    const order = backwards ? (a: number, b: number) => b - a : (a: number, b: number) => a - b
    let positions: number[] = []
    for (const type of new Set(types)) {
      for (const [position] of positionsOf.all(type, lower, upper, ...args, limit) as Array<[number]>)
        positions.push(position)
      if (limit >= 0 && positions.length >= limit) {
        positions = positions.sort(order).slice(0, limit)
        if (backwards) lower = positions[limit - 1]!
        else upper = positions[limit - 1]!
      }
    }
    positions.sort(order)
    if (limit >= 0) positions.length = Math.min(positions.length, limit)
    const rows = this.prepared(
      `SELECT ${COLUMNS} FROM events WHERE position IN (SELECT value FROM json_each(?)) ORDER BY position ${backwards ? 'DESC' : 'ASC'}`,
    ).all(JSON.stringify(positions)) as Row[]
    return rows.map(toRecorded)
  }

  /** statements keyed by their text, which varies only with direction and filter shape */
  private prepared(sql: string): Database.Statement {
    let stmt = this.statements.get(sql)
    if (!stmt) {
      stmt = this.db.prepare(sql).raw()
      this.statements.set(sql, stmt)
    }
    return stmt
  }

  subscribe(options: SubscribeOptions): Subscription {
    this.assertOpen()
    return this.feed.subscribe(options)
  }

  async headPosition(): Promise<number> {
    this.assertOpen()
    return this.stmt.head.get() as number
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    // every append accepted before close is written (or rejected) before close resolves
    for (;;) {
      this.flush()
      const next = this.writer?.inFlight[0]
      if (!next) break
      await next.settled
    }
    await this.feed.stopAll()
    // the read connection closes first, so the writer's connection is the last one and the
    // closing WAL checkpoint (an fsync) runs on the writer thread
    this.db.close()
    const writer = this.writer
    if (writer) {
      writer.closing = true
      writer.worker.ref()
      writer.worker.postMessage({ type: 'close' } satisfies WriterRequest)
      await writer.exited
      this.writer = undefined
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed')
  }
}

/** Turn what the writer reported about an append that was not simply written into its result or
 * its typed error, with the port's own rules. */
function settleOutcome(a: PendingAppend, o: WriterOutcome): AppendResult {
  switch (o.kind) {
    case 'retry': {
      const result = classifyRetry(
        a.stream,
        a.expected,
        o.stored.map((s) => s ?? undefined),
        o.current,
      )
      if (result) return result
      break
    }
    case 'expected':
      checkExpectedRevision(a.stream, a.expected, o.current)
      break
    case 'duplicate':
      throw new KennelError(
        'KENNEL_ERR_DUPLICATE_EVENT',
        `append to ${a.stream}: some event ids are already stored, others are not, or they are stored elsewhere`,
        { stream: a.stream },
      )
    case 'error':
      throw Object.assign(new Error(o.message), { name: 'SqliteError', code: o.code })
  }
  throw new KennelError(
    'KENNEL_ERR_INTERNAL',
    `append to ${a.stream}: the writer thread and the port disagree about its outcome (${o.kind})`,
  )
}

function serialise(e: PreparedEvent): PendingEvent {
  try {
    const data = storedJson(e.data)
    const metadata = storedJson(e.metadata)
    if (data === undefined || metadata === undefined) throw new Error('it has no JSON form')
    return new PendingEvent(e.id, e.type, data, metadata)
  } catch (err) {
    throw new KennelError(
      'KENNEL_ERR_VALIDATION',
      `event ${e.type} cannot be stored as JSON: ${(err as Error).message}`,
    )
  }
}

function filterSql(filter: EventFilter | undefined): [string, unknown[]] {
  if (!filter) return ['', []]
  let where = ''
  const args: unknown[] = []
  if (filter.types) {
    where += ` AND type IN (${filter.types.map(() => '?').join(',') || 'NULL'})`
    args.push(...filter.types)
  }
  if (filter.streamPrefixes) {
    // substr comparison, not LIKE: prefixes may contain % or _
    where += ` AND (${filter.streamPrefixes.map(() => 'substr(stream, 1, ?) = ?').join(' OR ') || '0'})`
    for (const p of filter.streamPrefixes) args.push(p.length, p)
  }
  return [where, args]
}

/** An event as stored: its columns, data and metadata as the text in the row (unparsed). */
export type StoredEventRow = Row

/** Reads an embedded store's events as stored, on a read-only connection of its own: for a
 * thread that is not the store's (the audit log's catch-up threads,
 * projections/audit/catch-up-thread.ts), which hashes the stored text without parsing it when
 * the store is marked json=canonical (every row's text is storedJson's). */
export interface StoredEventReader {
  /** the store is marked json=canonical in kennel_meta */
  readonly canonical: boolean
  /** the events with positions in (after, upTo], ascending */
  range(after: number, upTo: number): StoredEventRow[]
  close(): void
}

export function openStoredEventReader(file: string): StoredEventReader {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  db.pragma('busy_timeout = 10000')
  const canonical = db.prepare("SELECT value FROM kennel_meta WHERE key = 'json'").pluck().get() === 'canonical'
  const range = db.prepare(`SELECT ${COLUMNS} FROM events WHERE position > ? AND position <= ? ORDER BY position`).raw()
  return { canonical, range: (after, upTo) => range.all(after, upTo) as Row[], close: () => db.close() }
}
