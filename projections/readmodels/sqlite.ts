import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { WrongExpectedRevisionError } from '../../infra/eventstore/port.ts'
import type { EntryRow, LookupOptions, ProjectionChanges, ReadModelStore, StoredEntry, StoredProjection } from './port.ts'

// Embedded read models: a SQLite file beside the event store (never inside it, so the event
// store's immutability triggers and file stay untouched). WAL with synchronous=NORMAL: a power
// loss may drop the newest commits but never splits one, so the read model falls back to an
// older consistent checkpoint and the runner re-applies from there (outbox appends are
// idempotent); the events themselves are durable in the event store.
//
// The key index is a set of posting lists: one row per (key, run of positions) holding the
// positions and event times (ms) of that run, so a batch writes one row per distinct key instead
// of one per (key, event), and a from-zero load writes each key's postings once (see
// PostingBuffer). Event ids are indexed the same way under a bucket key (the id's first hex
// digits), resolved against the id stored in the entry row.

const SCHEMA_VERSION = 2

const SCHEMA = `
CREATE TABLE IF NOT EXISTS projection_checkpoints (
  name TEXT PRIMARY KEY, version INTEGER NOT NULL, position INTEGER NOT NULL,
  indexed INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS projection_documents (
  projection TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,
  PRIMARY KEY (projection, collection, id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_entries (
  projection TEXT NOT NULL, position INTEGER NOT NULL, ordinal INTEGER NOT NULL, time INTEGER NOT NULL,
  event_id TEXT NOT NULL, digest BLOB NOT NULL,
  PRIMARY KEY (projection, position)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_postings (
  projection TEXT NOT NULL, key TEXT NOT NULL, last_position INTEGER NOT NULL,
  min_time INTEGER NOT NULL, max_time INTEGER NOT NULL, postings BLOB NOT NULL,
  PRIMARY KEY (projection, key, last_position)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) STRICT;
`

/** tables of earlier layouts, dropped on upgrade (the runner rebuilds from the event store);
 * projection_cursors is kept, so alert delivery never repeats an alert after an upgrade */
const REBUILT_ON_UPGRADE = ['projection_checkpoints', 'projection_documents', 'projection_entries', 'projection_keys', 'projection_postings']

/** postings buffered by a from-zero load before they are written in the same transaction as a
 * checkpoint (bounds memory; each flush writes one row per key) */
const MAX_BUFFERED_POSTINGS = 4_000_000

/** entry rows per INSERT statement: one statement step instead of 64 */
const ENTRY_ROWS = 64

/** event ids are indexed under their first 4 hex digits: 65,536 buckets */
const eventBucket = (eventId: string): string => `\u0000event:${eventId.slice(0, 4).toLowerCase()}`

const toMs = (iso: string): number => {
  const ms = Date.parse(iso)
  return Number.isFinite(ms) ? ms : 0
}

interface EntrySqlRow {
  ordinal: number
  position: number
  time: number
  digest: Buffer
}

const toEntry = (r: EntrySqlRow): StoredEntry => ({ ordinal: r.ordinal, position: r.position, time: new Date(r.time).toISOString(), digest: r.digest })

export function openSqliteReadModels(file: string): ReadModelStore {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('busy_timeout = 10000')
  db.pragma('cache_size = -65536')
  db.transaction(() => {
    if (db.pragma('user_version', { simple: true }) === SCHEMA_VERSION) return
    for (const table of REBUILT_ON_UPGRADE) db.exec(`DROP TABLE IF EXISTS ${table}`)
    db.exec(SCHEMA)
    db.pragma(`user_version = ${SCHEMA_VERSION}`)
  }).immediate()
  try {
    fs.chmodSync(file, 0o600)
  } catch {
    // not ours to chmod; the directory mode still protects it
  }
  return new SqliteReadModels(db)
}

/** the bucket of an event id as a number (its first 4 hex digits), -1 when they are not hex */
function bucketIndex(eventId: string): number {
  if (eventId.length < 4) return -1
  let n = 0
  for (let i = 0; i < 4; i++) {
    const c = eventId.charCodeAt(i)
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1
    if (d < 0) return -1
    n = n * 16 + d
  }
  return n
}

const BUCKETS = 65_536
const bucketKey = (index: number): string => `\u0000event:${index.toString(16).padStart(4, '0')}`

/** Postings of one projection not yet written: key → [position, time ms, position, time ms, …];
 * event-id buckets by number (no key string per event). */
class PostingBuffer {
  readonly lists = new Map<string, number[]>()
  readonly buckets: Array<number[] | undefined> = new Array(BUCKETS)
  size = 0

  add(rows: readonly EntryRow[]): void {
    for (const { position, eventId, time, entry } of rows) {
      const ms = toMs(time)
      const b = bucketIndex(eventId)
      if (b >= 0) {
        const list = this.buckets[b]
        if (list === undefined) (this.buckets[b] = [position, ms]), this.size++
        else if (list[list.length - 2] !== position) list.push(position, ms), this.size++
      } else this.push(eventBucket(eventId), position, ms)
      for (const key of entry.keys) this.push(key, position, ms)
    }
  }

  private push(key: string, position: number, ms: number): void {
    let list = this.lists.get(key)
    if (!list) this.lists.set(key, (list = []))
    // a key named twice by one event (accountId = ownerAccountId) is indexed once
    else if (list[list.length - 2] === position) return
    list.push(position, ms)
    this.size++
  }

  /** every key with its list, in key order */
  *sorted(): Iterable<[string, number[]]> {
    // bucket keys begin with U+0000, before every other key, and sort as their numbers do
    const keys = [...this.lists.keys()].sort()
    let k = 0
    while (k < keys.length && keys[k]! < '\u0000event:') yield [keys[k]!, this.lists.get(keys[k++]!)!]
    for (let b = 0; b < BUCKETS; b++) {
      const list = this.buckets[b]
      if (list === undefined) continue
      const key = bucketKey(b)
      // the bucket of an id that does not begin with 4 hex digits sorts among them
      while (k < keys.length && keys[k]! < key) yield [keys[k]!, this.lists.get(keys[k++]!)!]
      yield [key, list]
    }
    while (k < keys.length) yield [keys[k]!, this.lists.get(keys[k++]!)!]
  }
}

interface BulkState {
  buffer: PostingBuffer
  /** checkpoint of the last commit, to which the index is brought by the next flush */
  position: number
}

class SqliteReadModels implements ReadModelStore {
  readonly kind = 'sqlite' as const
  private readonly stmt
  /** projections in a from-zero load whose postings are buffered (see ProjectionChanges.catchingUp) */
  private readonly bulk = new Map<string, BulkState>()

  constructor(private readonly db: Database.Database) {
    this.stmt = {
      checkpoint: db.prepare('SELECT version, position, indexed FROM projection_checkpoints WHERE name = ?'),
      docs: db.prepare('SELECT collection, id, doc FROM projection_documents WHERE projection = ?').raw(),
      putDoc: db.prepare('INSERT OR REPLACE INTO projection_documents (projection, collection, id, doc) VALUES (?, ?, ?, ?)'),
      deleteDoc: db.prepare('DELETE FROM projection_documents WHERE projection = ? AND collection = ? AND id = ?'),
      putEntry: db.prepare('INSERT OR REPLACE INTO projection_entries (projection, position, ordinal, time, event_id, digest) VALUES (?, ?, ?, ?, ?, ?)'),
      putEntries: db.prepare(`INSERT OR REPLACE INTO projection_entries (projection, position, ordinal, time, event_id, digest) VALUES ${Array.from({ length: ENTRY_ROWS }, () => '(?, ?, ?, ?, ?, ?)').join(', ')}`),
      putPostings: db.prepare('INSERT INTO projection_postings (projection, key, last_position, min_time, max_time, postings) VALUES (?, ?, ?, ?, ?, ?)'),
      putCheckpoint: db.prepare('INSERT OR REPLACE INTO projection_checkpoints (name, version, position, indexed) VALUES (?, ?, ?, ?)'),
      setIndexed: db.prepare('UPDATE projection_checkpoints SET indexed = ? WHERE name = ?'),
      postings: db.prepare('SELECT postings FROM projection_postings WHERE projection = ? AND key = ? AND max_time >= ? AND min_time < ? ORDER BY last_position').pluck(),
      eventIdAt: db.prepare('SELECT event_id FROM projection_entries WHERE projection = ? AND position = ?').pluck(),
      entryAt: db.prepare('SELECT ordinal, position, time, digest FROM projection_entries WHERE projection = ? AND position = ?'),
      entries: db.prepare('SELECT ordinal, position, time, digest FROM projection_entries WHERE projection = ? AND position > ? ORDER BY position LIMIT ?'),
      cursor: db.prepare('SELECT position FROM projection_cursors WHERE name = ?').pluck(),
      setCursor: db.prepare('INSERT OR REPLACE INTO projection_cursors (name, position) VALUES (?, ?)'),
    }
  }

  async load(name: string): Promise<StoredProjection | undefined> {
    // another writer may have moved on since this process buffered anything
    this.bulk.delete(name)
    return this.db.transaction(() => {
      const cp = this.stmt.checkpoint.get(name) as { version: number; position: number; indexed: number } | undefined
      if (!cp) return undefined
      const docs = (this.stmt.docs.all(name) as [string, string, string][]).map(([c, id, doc]) => [c, id, JSON.parse(doc)] as [string, string, unknown])
      return { version: cp.version, position: cp.position, docs, ...(cp.indexed < cp.position ? { incomplete: true as const } : {}) }
    })()
  }

  async commit(changes: readonly ProjectionChanges[]): Promise<void> {
    const outcome = new Map<string, 'buffer' | 'written' | 'done'>()
    this.db.transaction(() => {
      for (const c of changes) {
        const stored = this.stmt.checkpoint.get(c.name) as { position: number; indexed: number } | undefined
        if (stored?.position !== c.expectedPosition) {
          throw new WrongExpectedRevisionError(`projection ${c.name}`, c.expectedPosition ?? 'no_stream', stored?.position ?? 'no_stream', 'another process moved the checkpoint')
        }
        for (const [collection, id, json] of c.puts) this.stmt.putDoc.run(c.name, collection, id, json)
        for (const [collection, id] of c.deletes) this.stmt.deleteDoc.run(c.name, collection, id)
        this.putEntries(c.name, c.entries)
        // a from-zero load (nothing stored, or this process's own load going on) buffers its
        // postings; a crash before they are written leaves indexed < position, which load
        // reports as incomplete so that the runner starts again from zero
        const previous = this.bulk.get(c.name)
        const bulk = c.catchingUp === true && (stored === undefined || previous?.position === stored.position)
        if (bulk && (previous?.buffer.size ?? 0) < MAX_BUFFERED_POSTINGS) {
          this.stmt.putCheckpoint.run(c.name, c.version, c.position, stored?.indexed ?? 0)
          outcome.set(c.name, 'buffer')
          continue
        }
        if (previous) this.writePostings(c.name, previous.buffer)
        const batch = new PostingBuffer()
        batch.add(c.entries)
        this.writePostings(c.name, batch)
        this.stmt.putCheckpoint.run(c.name, c.version, c.position, c.position)
        outcome.set(c.name, bulk ? 'written' : 'done')
      }
    }).immediate()
    for (const c of changes) {
      const what = outcome.get(c.name)
      if (what === 'done') {
        this.bulk.delete(c.name)
        continue
      }
      const state = what === 'buffer' ? (this.bulk.get(c.name) ?? { buffer: new PostingBuffer(), position: 0 }) : { buffer: new PostingBuffer(), position: 0 }
      if (what === 'buffer') state.buffer.add(c.entries)
      state.position = c.position
      this.bulk.set(c.name, state)
    }
  }

  private readonly entryParams: unknown[] = new Array(ENTRY_ROWS * 6)

  private putEntries(name: string, entries: readonly EntryRow[]): void {
    const params = this.entryParams
    let i = 0
    for (; i + ENTRY_ROWS <= entries.length; i += ENTRY_ROWS) {
      for (let k = 0; k < ENTRY_ROWS; k++) {
        const { position, eventId, time, entry } = entries[i + k]!
        const o = k * 6
        params[o] = name
        params[o + 1] = position
        params[o + 2] = entry.ordinal
        params[o + 3] = toMs(time)
        params[o + 4] = eventId
        params[o + 5] = entry.digest
      }
      this.stmt.putEntries.run(params)
    }
    for (; i < entries.length; i++) {
      const { position, eventId, time, entry } = entries[i]!
      this.stmt.putEntry.run(name, position, entry.ordinal, toMs(time), eventId, entry.digest)
    }
  }

  async settle(): Promise<void> {
    if (this.bulk.size === 0) return
    this.db.transaction(() => {
      for (const [name, state] of this.bulk) {
        const stored = this.stmt.checkpoint.get(name) as { position: number } | undefined
        // moved by another writer: what was buffered no longer matches; load reports it
        if (stored?.position !== state.position) continue
        this.writePostings(name, state.buffer)
        this.stmt.setIndexed.run(state.position, name)
      }
    }).immediate()
    this.bulk.clear()
  }

  /** one row per key, in key order so that the B-tree is written front to back */
  private writePostings(name: string, buffer: PostingBuffer): void {
    for (const [key, list] of buffer.sorted()) {
      let min = Infinity
      let max = -Infinity
      for (let i = 1; i < list.length; i += 2) {
        const ms = list[i]!
        if (ms < min) min = ms
        if (ms > max) max = ms
      }
      const bytes = new Float64Array(list)
      this.stmt.putPostings.run(name, key, list[list.length - 2], min, max, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    }
  }

  async reset(name: string): Promise<void> {
    this.bulk.delete(name)
    this.db.transaction(() => {
      for (const table of ['projection_documents', 'projection_entries', 'projection_postings']) this.db.prepare(`DELETE FROM ${table} WHERE projection = ?`).run(name)
      this.db.prepare('DELETE FROM projection_checkpoints WHERE name = ?').run(name)
    }).immediate()
  }

  private postings(name: string, key: string, since: number, until: number): Array<[position: number, ms: number]> {
    const out: Array<[number, number]> = []
    for (const blob of this.stmt.postings.all(name, key, since, until) as Buffer[]) {
      const list = new Float64Array(blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.byteLength))
      for (let i = 0; i < list.length; i += 2) {
        const ms = list[i + 1]!
        if (ms >= since && ms < until) out.push([list[i]!, ms])
      }
    }
    return out
  }

  async lookup(name: string, key: string, options: LookupOptions = {}): Promise<number[]> {
    const since = options.since === undefined ? Number.MIN_SAFE_INTEGER : Date.parse(options.since)
    const until = options.until === undefined ? Number.MAX_SAFE_INTEGER : Date.parse(options.until)
    const found = this.postings(name, key, since, until).sort((a, b) => a[1] - b[1] || a[0] - b[0])
    const positions = found.map(([position]) => position)
    return options.limit === undefined || options.limit < 0 ? positions : positions.slice(0, options.limit)
  }

  async positionOf(name: string, eventId: string): Promise<number | undefined> {
    for (const [position] of this.postings(name, eventBucket(eventId), Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)) {
      if (this.stmt.eventIdAt.get(name, position) === eventId) return position
    }
    return undefined
  }

  async entryAt(name: string, position: number): Promise<StoredEntry | undefined> {
    const row = this.stmt.entryAt.get(name, position) as EntrySqlRow | undefined
    return row && toEntry(row)
  }

  async entries(name: string, afterPosition: number, limit: number): Promise<StoredEntry[]> {
    return (this.stmt.entries.all(name, afterPosition, limit) as EntrySqlRow[]).map(toEntry)
  }

  async cursor(name: string): Promise<number> {
    return (this.stmt.cursor.get(name) as number | undefined) ?? 0
  }

  async setCursor(name: string, position: number): Promise<void> {
    this.stmt.setCursor.run(name, position)
  }

  async close(): Promise<void> {
    if (!this.db.open) return
    await this.settle()
    this.db.close()
  }
}
