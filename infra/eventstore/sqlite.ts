import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { KennelError } from '../errors.ts'
import {
  type AppendOptions,
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
import { ChangeNotifier, pullSubscription } from './subscription.ts'

// Embedded event store: one SQLite file in WAL mode, no network listener (R7). Appends that
// arrive in the same turn of the event loop share one transaction and one fsync (group commit);
// each keeps its own expected-revision check inside a savepoint. synchronous=FULL makes an
// acknowledged append survive kill -9 and power loss.

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
type Row = [position: number, id: string, stream: string, revision: number, type: string, time: string, data: string, metadata: string]

/** an event serialised before it is queued, so a bad value fails its own append, not a batch */
interface SerialisedEvent {
  id: string
  type: string
  data: string
  metadata: string
}

interface PendingAppend {
  stream: string
  events: SerialisedEvent[]
  expected: AppendOptions['expectedRevision'] & {}
  resolve: (r: AppendResult) => void
  reject: (e: unknown) => void
}

const toRecorded = (r: Row): RecordedEvent => ({
  id: r[1],
  type: r[4],
  stream: r[2],
  revision: r[3],
  position: r[0],
  time: r[5],
  data: JSON.parse(r[6]),
  metadata: JSON.parse(r[7]),
})

export interface SqliteOptions extends OpenOptions {
  /** interval at which commits by other processes are noticed (PRAGMA data_version) */
  pollMs?: number
}

export function openSqliteEventStore(file: string, options: SqliteOptions): EventStore {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.pragma('busy_timeout = 10000')
  db.pragma('foreign_keys = ON')
  const environment = initialise(db, file, options.environment)
  try {
    fs.chmodSync(file, 0o600)
  } catch {
    // not our file to chmod (read-only mount); the directory mode still protects it
  }
  return new SqliteEventStore(db, environment, options.pollMs ?? 10)
}

function initialise(db: Database.Database, file: string, environment: string): string {
  return db.transaction(() => {
    db.exec(SCHEMA)
    const row = db.prepare('SELECT value FROM kennel_meta WHERE key = ?').get('environment') as { value: string } | undefined
    if (row === undefined) {
      db.prepare('INSERT INTO kennel_meta (key, value) VALUES (?, ?), (?, ?)').run('environment', environment, 'created', new Date().toISOString())
      return environment
    }
    if (row.value !== environment) {
      throw new KennelError('KENNEL_ERR_ENVIRONMENT_MISMATCH', `event store ${file} was created by a ${row.value} environment; refusing to open it as ${environment} (R8)`, { stored: row.value, opening: environment })
    }
    return row.value
  }).immediate()
}

class SqliteEventStore implements EventStore {
  readonly kind = 'sqlite' as const
  private readonly notifier = new ChangeNotifier()
  private pending: PendingAppend[] = []
  private flushScheduled = false
  private closed = false
  private readonly subscriptions = new Set<Subscription>()
  private poller: NodeJS.Timeout | undefined
  private dataVersion: number
  private readonly statements = new Map<string, Database.Statement>()

  private readonly stmt

  constructor(
    private readonly db: Database.Database,
    readonly environment: string,
    private readonly pollMs: number,
  ) {
    this.stmt = {
      lastRevision: db.prepare('SELECT max(revision) AS r FROM events WHERE stream = ?').pluck(),
      locate: db.prepare('SELECT stream, revision, position FROM events WHERE id = ?'),
      insert: db.prepare('INSERT INTO events (id, stream, revision, type, time, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      head: db.prepare('SELECT coalesce(max(position), 0) FROM events').pluck(),
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
      savepoint: db.prepare('SAVEPOINT append'),
      release: db.prepare('RELEASE append'),
      rollbackTo: db.prepare('ROLLBACK TO append'),
    }
    this.dataVersion = this.stmt.dataVersion.get() as number
  }

  append(stream: string, events: readonly NewEvent[], options: AppendOptions = {}): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed'))
    const expected = options.expectedRevision ?? 'any'
    let prepared: SerialisedEvent[]
    try {
      prepared = prepareAppend(stream, events, expected).map(serialise)
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ stream, events: prepared, expected, resolve, reject })
      if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(() => this.flush())
      }
    })
  }

  private flush(): void {
    this.flushScheduled = false
    const batch = this.pending
    this.pending = []
    if (batch.length === 0) return
    const outcomes: Array<{ ok: true; result: AppendResult } | { ok: false; error: unknown }> = []
    const time = new Date().toISOString()
    try {
      this.db.transaction(() => {
        for (const a of batch) {
          // a single-event append either writes its one row or fails before writing: only
          // multi-event appends need a savepoint to undo a partial write
          const guarded = a.events.length > 1
          if (guarded) this.stmt.savepoint.run()
          try {
            outcomes.push({ ok: true, result: this.appendOne(a, time) })
            if (guarded) this.stmt.release.run()
          } catch (error) {
            if (guarded) {
              this.stmt.rollbackTo.run()
              this.stmt.release.run()
            }
            outcomes.push({ ok: false, error })
          }
        }
      }).immediate()
    } catch (error) {
      for (const a of batch) a.reject(error)
      return
    }
    batch.forEach((a, i) => {
      const o = outcomes[i]!
      if (o.ok) a.resolve(o.result)
      else a.reject(o.error)
    })
    this.notifier.notify()
  }

  private appendOne(a: PendingAppend, time: string): AppendResult {
    const last = this.stmt.lastRevision.get(a.stream) as number | null
    const current = last ?? -1
    // the common case is a new append: look up only the first id, and let the UNIQUE index
    // catch a later id that is already stored (a partial overlap)
    if (this.stmt.locate.get(a.events[0]!.id) !== undefined) {
      const stored = a.events.map((e) => this.stmt.locate.get(e.id) as StoredLocation | undefined)
      return classifyRetry(a.stream, a.expected, stored, current)!
    }
    checkExpectedRevision(a.stream, a.expected, current)
    let revision = current
    let position = 0
    for (const e of a.events) {
      revision++
      try {
        position = Number(this.stmt.insert.run(e.id, a.stream, revision, e.type, time, e.data, e.metadata).lastInsertRowid)
      } catch (err) {
        if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' && /events\.id/.test((err as Error).message)) {
          throw new KennelError('KENNEL_ERR_DUPLICATE_EVENT', `append to ${a.stream}: some event ids are already stored, others are not, or they are stored elsewhere`, { stream: a.stream })
        }
        throw err
      }
    }
    return { nextExpectedRevision: revision, position }
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

  private readAllSync(options: ReadAllOptions): RecordedEvent[] {
    const backwards = options.direction === 'backwards'
    const [where, args] = filterSql(options.filter)
    const bound = backwards ? 'position < ?' : 'position > ?'
    const boundValue = backwards ? (options.before ?? Number.MAX_SAFE_INTEGER) : (options.after ?? 0)
    const sql = `SELECT ${COLUMNS} FROM events WHERE ${bound}${where} ORDER BY position ${backwards ? 'DESC' : 'ASC'} LIMIT ?`
    return (this.prepared(sql).all(boundValue, ...args, options.maxCount ?? -1) as Row[]).map(toRecorded)
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
    const sub = pullSubscription(
      {
        notifier: this.notifier,
        pollMs: 1000,
        readBatch: async (after, max, filter) => this.readAllSync({ after, maxCount: max, filter }),
      },
      options,
    )
    this.subscriptions.add(sub)
    this.startPolling()
    void sub.closed.then(() => {
      this.subscriptions.delete(sub)
      if (this.subscriptions.size === 0) this.stopPolling()
    })
    return sub
  }

  /** Notice commits by other processes (the CLI appending while the server runs). */
  private startPolling(): void {
    if (this.poller) return
    this.poller = setInterval(() => {
      const v = this.stmt.dataVersion.get() as number
      if (v !== this.dataVersion) {
        this.dataVersion = v
        this.notifier.notify()
      }
    }, this.pollMs)
    this.poller.unref()
  }

  private stopPolling(): void {
    if (this.poller) clearInterval(this.poller)
    this.poller = undefined
  }

  async headPosition(): Promise<number> {
    this.assertOpen()
    return this.stmt.head.get() as number
  }

  async close(): Promise<void> {
    if (this.closed) return
    if (this.pending.length > 0) this.flush()
    this.closed = true
    await Promise.all([...this.subscriptions].map((s) => s.stop()))
    this.stopPolling()
    this.db.close()
  }

  private assertOpen(): void {
    if (this.closed) throw new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed')
  }
}

function serialise(e: PreparedEvent): SerialisedEvent {
  try {
    return { id: e.id, type: e.type, data: JSON.stringify(e.data), metadata: JSON.stringify(e.metadata) }
  } catch (err) {
    throw new KennelError('KENNEL_ERR_VALIDATION', `event ${e.type} cannot be stored as JSON: ${(err as Error).message}`)
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
