import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { WrongExpectedRevisionError } from '../../infra/eventstore/port.ts'
import { preparePrivateDatabase } from '../../infra/eventstore/sqlite-file.ts'
import { packAscending, packPostings, packRuns, unpackAscending, unpackPostings, unpackRuns } from './packing.ts'
import { FORGETTABLE_KEY_PREFIX, type EntryColumns, type EntryRow, type LookupOptions, type ProjectionChanges, type ReadModelStore, type StoredEntry, type StoredProjection } from './port.ts'

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
// digits), resolved against the id stored with the entry. Entries are stored in runs: one row
// per run of up to 1,024 consecutive entries of a commit, their fields as packed arrays, so a
// rebuild writes a thousandth of the rows it would write with one row per event.

const SCHEMA_VERSION = 4

const SCHEMA = `
CREATE TABLE IF NOT EXISTS projection_checkpoints (
  name TEXT PRIMARY KEY, version INTEGER NOT NULL, position INTEGER NOT NULL,
  indexed INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS projection_documents (
  projection TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,
  PRIMARY KEY (projection, collection, id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_entry_runs (
  projection TEXT NOT NULL, last_position INTEGER NOT NULL, first_position INTEGER NOT NULL,
  first_ordinal INTEGER NOT NULL, positions BLOB NOT NULL, times BLOB NOT NULL, digests BLOB NOT NULL,
  event_ids TEXT NOT NULL,
  UNIQUE (projection, last_position)
) STRICT;
CREATE TABLE IF NOT EXISTS projection_postings (
  projection TEXT NOT NULL, key TEXT NOT NULL, last_position INTEGER NOT NULL,
  min_time INTEGER NOT NULL, max_time INTEGER NOT NULL, postings BLOB NOT NULL,
  PRIMARY KEY (projection, key, last_position)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) STRICT;
`

/** tables of earlier layouts, dropped on upgrade (the runner rebuilds from the event store);
 * projection_cursors is kept, so alert delivery never repeats an alert after an upgrade */
const REBUILT_ON_UPGRADE = ['projection_checkpoints', 'projection_documents', 'projection_entries', 'projection_entry_runs', 'projection_keys', 'projection_postings']

/** postings buffered by a from-zero load before they are written in the same transaction as a
 * checkpoint (bounds memory; each flush writes one row per key) */
const MAX_BUFFERED_POSTINGS = 4_000_000

/** entries per run row: consecutive ordinals, positions and times packed (packing.ts), digests
 * of one length (another length starts a run of its own), ids as a JSON array */
const RUN = 1024

/** event ids are indexed under their first 4 hex digits: 65,536 buckets */
const eventBucket = (eventId: string): string => `\u0000event:${eventId.slice(0, 4).toLowerCase()}`

const toMs = (iso: string): number => {
  const ms = Date.parse(iso)
  return Number.isFinite(ms) ? ms : 0
}

/** toMs of the events of a commit, which mostly share their time: each new text parsed once */
function timesInMs(): (iso: string) => number {
  let last = ''
  let ms = 0
  return (iso) => (iso === last ? ms : ((last = iso), (ms = toMs(iso))))
}

interface RunRow {
  last_position: number
  first_ordinal: number
  positions: Buffer
  times: Buffer
  digests: Buffer
  event_ids: string
}

/** a run row decoded: parallel arrays, digests as one buffer of equal slices */
interface Run {
  lastPosition: number
  firstOrdinal: number
  positions: Float64Array
  times: Float64Array
  digests: Buffer
  digestLength: number
  eventIds: string[]
}

function decodeRun(r: RunRow): Run {
  const positions = unpackAscending(r.positions)
  return { lastPosition: r.last_position, firstOrdinal: r.first_ordinal, positions, times: unpackRuns(r.times), digests: r.digests, digestLength: positions.length === 0 ? 0 : r.digests.length / positions.length, eventIds: JSON.parse(r.event_ids) as string[] }
}

/** the entry at index i of a run; its digest a view of the run's (entries of a run mostly share
 * a time, so the last one's text is kept) */
let lastMs = Number.NaN
let lastIso = ''
function entryOf(run: Run, i: number): StoredEntry {
  const ms = run.times[i]!
  if (ms !== lastMs) (lastMs = ms), (lastIso = new Date(ms).toISOString())
  return { ordinal: run.firstOrdinal + i, position: run.positions[i]!, time: lastIso, digest: run.digests.subarray(i * run.digestLength, (i + 1) * run.digestLength) }
}

/** index of `position` in a run, -1 when absent */
function indexIn(run: Run, position: number): number {
  let lo = 0
  let hi = run.positions.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const p = run.positions[mid]!
    if (p === position) return mid
    if (p < position) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

export function openSqliteReadModels(file: string): ReadModelStore {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  preparePrivateDatabase(file)
  const db = new Database(file)
  // a new file only: entry runs are rows of tens of kilobytes, which 4 KiB pages split into chains
  db.pragma('page_size = 65536')
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

/** postings per block of a PostingBuffer (blocks are added, never copied) */
const BLOCK = 65_536

/** Postings of one projection not yet written, in the order added: a key id, a position and a
 * time (ms) each, in blocks of typed arrays. Keys get dense ids as they first appear: key names
 * by a map, event-id buckets by their number (no key string per event). */
class PostingBuffer {
  private readonly ids = new Map<string, number>()
  /** bucket number → key id: an array for a from-zero load's buffer, which sees most of them */
  private readonly bucketIds: Map<number, number> | Int32Array
  /** per key id: its name, or its bucket number (names of buckets are made when written) */
  private readonly keys: Array<string | number> = []
  /** per key id: the position of its newest posting (-1: none yet) */
  private last: Float64Array = new Float64Array(64).fill(-1)
  private readonly blocks: Array<{ keyOf: Int32Array; positions: Float64Array; times: Float64Array }> = []
  /** per key-name table of a catch-up (EntryColumns.keyNames): its names' ids here (-1: not yet) */
  private readonly tables = new WeakMap<readonly string[], Int32Array>()
  size = 0

  constructor(large = false) {
    this.bucketIds = large ? new Int32Array(BUCKETS).fill(-1) : new Map()
  }

  add(rows: readonly EntryRow[]): void {
    const msOf = timesInMs()
    for (const { position, eventId, time, entry } of rows) {
      const ms = msOf(time)
      this.push(this.bucketOf(eventId), position, ms)
      for (const key of entry.keys) this.push(this.idOf(key), position, ms)
    }
  }

  addChanges(c: ProjectionChanges): void {
    for (const columns of c.columns ?? []) this.addColumns(columns)
    this.add(c.entries)
  }

  addColumns(c: EntryColumns): void {
    let ids = this.tables.get(c.keyNames)
    if (ids === undefined || ids.length < c.keyNames.length) {
      const bigger = new Int32Array(Math.max(1024, c.keyNames.length * 2)).fill(-1)
      if (ids !== undefined) bigger.set(ids)
      this.tables.set(c.keyNames, (ids = bigger))
    }
    const msOf = timesInMs()
    for (let at = c.start; at < c.start + c.length; at++) {
      const ms = msOf(c.times[at]!)
      const position = c.positions[at]!
      this.push(this.bucketOf(c.eventIds[at]!), position, ms)
      for (let k = c.keyStarts[at]!; k < c.keyStarts[at + 1]!; k++) {
        const local = c.keys[k]!
        let id = ids[local]!
        if (id < 0) ids[local] = id = this.idOf(c.keyNames[local]!)
        this.push(id, position, ms)
      }
    }
  }

  private bucketOf(eventId: string): number {
    const b = bucketIndex(eventId)
    if (b < 0) return this.idOf(eventBucket(eventId))
    if (this.bucketIds instanceof Int32Array) {
      const id = this.bucketIds[b]!
      return id >= 0 ? id : (this.bucketIds[b] = this.newId(b))
    }
    let id = this.bucketIds.get(b)
    if (id === undefined) this.bucketIds.set(b, (id = this.newId(b)))
    return id
  }

  private idOf(key: string): number {
    let id = this.ids.get(key)
    if (id === undefined) this.ids.set(key, (id = this.newId(key)))
    return id
  }

  private newId(key: string | number): number {
    const id = this.keys.length
    this.keys.push(key)
    if (id >= this.last.length) this.last = grow(this.last, -1)
    return id
  }

  private push(id: number, position: number, ms: number): void {
    // a key named twice by one event (accountId = ownerAccountId) is indexed once
    if (this.last[id] === position) return
    this.last[id] = position
    const n = this.size % BLOCK
    if (n === 0) this.blocks.push({ keyOf: new Int32Array(BLOCK), positions: new Float64Array(BLOCK), times: new Float64Array(BLOCK) })
    const block = this.blocks[this.blocks.length - 1]!
    block.keyOf[n] = id
    block.positions[n] = position
    block.times[n] = ms
    this.size++
  }

  /** every key with its postings ([position, ms, position, ms, …] in the order added) and their
   * time range, in key order: a counting sort by key id into one array, each key a view of it */
  *sorted(): Iterable<[key: string, postings: Float64Array, minTime: number, maxTime: number]> {
    const keys = this.keys.length
    const start = new Int32Array(keys + 1)
    const out = new Float64Array(2 * this.size)
    const min = new Float64Array(keys).fill(Infinity)
    const max = new Float64Array(keys).fill(-Infinity)
    const count = (b: number): number => (b === this.blocks.length - 1 ? this.size - b * BLOCK : BLOCK)
    for (let b = 0; b < this.blocks.length; b++) {
      const { keyOf } = this.blocks[b]!
      for (let i = 0, n = count(b); i < n; i++) start[keyOf[i]! + 1]!++
    }
    for (let k = 0; k < keys; k++) start[k + 1]! += start[k]!
    const next = start.slice(0, keys)
    for (let b = 0; b < this.blocks.length; b++) {
      const { keyOf, positions, times } = this.blocks[b]!
      for (let i = 0, n = count(b); i < n; i++) {
        const k = keyOf[i]!
        const at = 2 * next[k]!++
        const ms = times[i]!
        out[at] = positions[i]!
        out[at + 1] = ms
        if (ms < min[k]!) min[k] = ms
        if (ms > max[k]!) max[k] = ms
      }
    }
    // bucket names begin with U+0000 and sort as their numbers do: only the others need comparing
    const buckets: number[] = []
    const named: number[] = []
    for (let k = 0; k < keys; k++) (typeof this.keys[k] === 'number' ? buckets : named).push(k)
    buckets.sort((a, b) => (this.keys[a] as number) - (this.keys[b] as number))
    named.sort((a, b) => ((this.keys[a] as string) < (this.keys[b] as string) ? -1 : 1))
    const name = (k: number): string => {
      const key = this.keys[k]!
      return typeof key === 'number' ? bucketKey(key) : key
    }
    for (const k of mergeByName(buckets, named, name)) yield [name(k), out.subarray(2 * start[k]!, 2 * start[k + 1]!), min[k]!, max[k]!]
  }
}

/** two id lists, each in name order, merged in name order */
function* mergeByName(a: readonly number[], b: readonly number[], name: (id: number) => string): Iterable<number> {
  let i = 0
  let j = 0
  while (i < a.length && j < b.length) yield name(a[i]!) < name(b[j]!) ? a[i++]! : b[j++]!
  while (i < a.length) yield a[i++]!
  while (j < b.length) yield b[j++]!
}

function grow(a: Float64Array, fill: number): Float64Array {
  const bigger = new Float64Array(a.length * 2).fill(fill)
  bigger.set(a)
  return bigger
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
      putRun: db.prepare('INSERT OR REPLACE INTO projection_entry_runs (projection, last_position, first_position, first_ordinal, positions, times, digests, event_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      putPostings: db.prepare('INSERT INTO projection_postings (projection, key, last_position, min_time, max_time, postings) VALUES (?, ?, ?, ?, ?, ?)'),
      putCheckpoint: db.prepare('INSERT OR REPLACE INTO projection_checkpoints (name, version, position, indexed) VALUES (?, ?, ?, ?)'),
      setIndexed: db.prepare('UPDATE projection_checkpoints SET indexed = ? WHERE name = ?'),
      postings: db.prepare('SELECT postings FROM projection_postings WHERE projection = ? AND key = ? AND max_time >= ? AND min_time < ? ORDER BY last_position').pluck(),
      runFrom: db.prepare('SELECT last_position, first_ordinal, positions, times, digests, event_ids FROM projection_entry_runs WHERE projection = ? AND last_position >= ? ORDER BY last_position LIMIT 1'),
      cursor: db.prepare('SELECT position FROM projection_cursors WHERE name = ?').pluck(),
      checkpoints: db.prepare('SELECT name, position FROM projection_checkpoints').raw(),
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
        for (const columns of c.columns ?? []) this.putColumns(c.name, columns)
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
        batch.addChanges(c)
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
      const state = what === 'buffer' ? (this.bulk.get(c.name) ?? { buffer: new PostingBuffer(true), position: 0 }) : { buffer: new PostingBuffer(true), position: 0 }
      if (what === 'buffer') state.buffer.addChanges(c)
      state.position = c.position
      this.bulk.set(c.name, state)
    }
  }

  /** entries in columns as runs of up to RUN */
  private putColumns(name: string, c: EntryColumns): void {
    const end = c.start + c.length
    for (let from = c.start; from < end; from += RUN) {
      const to = Math.min(from + RUN, end)
      const times = new Float64Array(to - from)
      const msOf = timesInMs()
      for (let i = from; i < to; i++) times[i - from] = msOf(c.times[i]!)
      const digests = Buffer.from(c.digests.buffer, c.digests.byteOffset + from * 32, (to - from) * 32)
      this.putRun(name, c.firstOrdinal + from - c.start, c.positions.subarray(from, to), times, digests, c.eventIds.slice(from, to))
    }
  }

  /** entries as runs: up to RUN consecutive ordinals with digests of one length */
  private putEntries(name: string, entries: readonly EntryRow[]): void {
    let start = 0
    while (start < entries.length) {
      const first = entries[start]!.entry
      let end = start + 1
      while (end < entries.length && end - start < RUN && entries[end]!.entry.digest.length === first.digest.length && entries[end]!.entry.ordinal === first.ordinal + end - start) end++
      const n = end - start
      const positions = new Float64Array(n)
      const times = new Float64Array(n)
      const digests = Buffer.allocUnsafe(n * first.digest.length)
      const ids: string[] = new Array(n)
      const msOf = timesInMs()
      for (let k = 0; k < n; k++) {
        const { position, eventId, time, entry } = entries[start + k]!
        positions[k] = position
        times[k] = msOf(time)
        digests.set(entry.digest, k * first.digest.length)
        ids[k] = eventId
      }
      this.putRun(name, first.ordinal, positions, times, digests, ids)
      start = end
    }
  }

  private putRun(name: string, firstOrdinal: number, positions: Float64Array, times: Float64Array, digests: Buffer, ids: readonly string[]): void {
    this.stmt.putRun.run(name, positions[positions.length - 1], positions[0], firstOrdinal, packAscending(positions), packRuns(times), digests, JSON.stringify(ids))
  }

  /** the run holding `position`, or the first run after it */
  private runFrom(name: string, position: number): Run | undefined {
    const row = this.stmt.runFrom.get(name, position) as RunRow | undefined
    return row && decodeRun(row)
  }

  private entryIndex(name: string, position: number): [Run, number] | undefined {
    const run = this.runFrom(name, position)
    const i = run === undefined ? -1 : indexIn(run, position)
    return i < 0 ? undefined : [run!, i]
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
    for (const [key, list, min, max] of buffer.sorted()) {
      this.stmt.putPostings.run(name, key, list[list.length - 2], min, max, packPostings(list))
    }
  }

  async reset(name: string): Promise<void> {
    this.bulk.delete(name)
    this.db.transaction(() => {
      for (const table of ['projection_documents', 'projection_entry_runs', 'projection_postings']) this.db.prepare(`DELETE FROM ${table} WHERE projection = ?`).run(name)
      this.db.prepare('DELETE FROM projection_checkpoints WHERE name = ?').run(name)
    }).immediate()
  }

  async forget(name: string, before: string): Promise<number> {
    const cutoff = Date.parse(before)
    const keyPrefix = FORGETTABLE_KEY_PREFIX
    // keys compare as bytes (BINARY): the prefix is the range [prefix, prefix + U+FFFF) of the primary key
    const rows = this.db.prepare('SELECT key, last_position, postings FROM projection_postings WHERE projection = ? AND key >= ? AND key < ? AND min_time < ?').raw()
    const remove = this.db.prepare('DELETE FROM projection_postings WHERE projection = ? AND key = ? AND last_position = ?')
    return this.db.transaction(() => {
      let dropped = 0
      for (const [key, last, blob] of rows.all(name, keyPrefix, `${keyPrefix}\uffff`, cutoff) as Array<[string, number, Buffer]>) {
        const list = unpackPostings(blob)
        const kept: number[] = []
        for (let i = 0; i < list.length; i += 2) if (list[i + 1]! >= cutoff) kept.push(list[i]!, list[i + 1]!)
        dropped += (list.length - kept.length) / 2
        remove.run(name, key, last)
        if (kept.length === 0) continue
        const times = kept.filter((_, i) => i % 2 === 1)
        this.stmt.putPostings.run(name, key, kept[kept.length - 2], Math.min(...times), Math.max(...times), packPostings(Float64Array.from(kept)))
      }
      return dropped
    }).immediate()
  }

  private postings(name: string, key: string, since: number, until: number): Array<[position: number, ms: number]> {
    const out: Array<[number, number]> = []
    for (const blob of this.stmt.postings.all(name, key, since, until) as Buffer[]) {
      const list = unpackPostings(blob)
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
      const found = this.entryIndex(name, position)
      if (found !== undefined && found[0].eventIds[found[1]] === eventId) return position
    }
    return undefined
  }

  async entryAt(name: string, position: number): Promise<StoredEntry | undefined> {
    const found = this.entryIndex(name, position)
    return found && entryOf(...found)
  }

  async entries(name: string, afterPosition: number, limit: number): Promise<StoredEntry[]> {
    const out: StoredEntry[] = []
    let after = afterPosition
    while (out.length < limit) {
      const run = this.runFrom(name, after + 1)
      if (run === undefined) break
      for (let i = 0; i < run.positions.length && out.length < limit; i++) if (run.positions[i]! > after) out.push(entryOf(run, i))
      after = run.lastPosition
    }
    return out
  }

  async checkpoints(): Promise<Map<string, number>> {
    return new Map(this.stmt.checkpoints.all() as Array<[string, number]>)
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
