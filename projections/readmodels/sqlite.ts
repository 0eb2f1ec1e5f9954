import type Database from 'better-sqlite3'
import { WrongExpectedRevisionError } from '../../infra/eventstore/port.ts'
import { isoTimes, packPostings } from './packing.ts'
import {
  FORGETTABLE_KEY_PREFIX,
  type EntryLookups,
  type LookupOptions,
  type ProjectionChanges,
  type ReadModelStore,
  type StoredEntry,
  type StoredProjection,
} from './port.ts'
import { eventBucket, MAX_BUFFERED_POSTINGS, PostingBuffer, postingsSince, postingsWithin } from './sqlite-postings.ts'
import {
  decodeRun,
  entryOf,
  indexIn,
  RUN_COLUMNS,
  runsOfColumns,
  runsOfEntries,
  type Run,
  type RunRow,
} from './sqlite-runs.ts'
import { openReadModelDatabase, PROJECTION_TABLES } from './sqlite-schema.ts'

// Embedded read models: a SQLite file beside the event store (never inside it, so the event
// store's immutability triggers and file stay untouched). WAL with synchronous=NORMAL: a power
// loss may drop the newest commits but never splits one, so the read model falls back to an
// older consistent checkpoint and the runner re-applies from there (outbox appends are
// idempotent); the events themselves are durable in the event store.
//
// This file is the store: checkpoints, documents and the transactions that write them with the
// entries and the key index. The tables are in sqlite-schema.ts, entries are stored in runs
// (sqlite-runs.ts), the key index is a set of posting lists (sqlite-postings.ts), and a from-zero
// load buffers its postings and writes each key's once (PostingBuffer).

export function openSqliteReadModels(file: string): ReadModelStore & EntryLookups {
  return new SqliteReadModels(openReadModelDatabase(file))
}

interface BulkState {
  buffer: PostingBuffer
  /** checkpoint of the last commit, to which the index is brought by the next flush */
  position: number
}

class SqliteReadModels implements ReadModelStore, EntryLookups {
  readonly kind = 'sqlite' as const
  private readonly stmt
  /** projections in a from-zero load whose postings are buffered (see ProjectionChanges.catchingUp) */
  private readonly bulk = new Map<string, BulkState>()
  /** the text of entry times read from runs (they mostly share one: the last is kept) */
  private readonly isoOf = isoTimes()

  constructor(private readonly db: Database.Database) {
    this.stmt = {
      checkpoint: db.prepare('SELECT version, position, indexed FROM projection_checkpoints WHERE name = ?'),
      docs: db.prepare('SELECT collection, id, doc FROM projection_documents WHERE projection = ?').raw(),
      putDoc: db.prepare(
        'INSERT OR REPLACE INTO projection_documents (projection, collection, id, doc) VALUES (?, ?, ?, ?)',
      ),
      deleteDoc: db.prepare('DELETE FROM projection_documents WHERE projection = ? AND collection = ? AND id = ?'),
      putRun: db.prepare(
        'INSERT OR REPLACE INTO projection_entry_runs (projection, last_position, first_position, first_ordinal, positions, times, digests, event_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      putPostings: db.prepare(
        'INSERT INTO projection_postings (projection, key, last_position, min_time, max_time, postings) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      putCheckpoint: db.prepare(
        'INSERT OR REPLACE INTO projection_checkpoints (name, version, position, indexed) VALUES (?, ?, ?, ?)',
      ),
      setIndexed: db.prepare('UPDATE projection_checkpoints SET indexed = ? WHERE name = ?'),
      postings: db
        .prepare(
          'SELECT postings FROM projection_postings WHERE projection = ? AND key = ? AND max_time >= ? AND min_time < ? ORDER BY last_position',
        )
        .pluck(),
      runFrom: db.prepare(
        `SELECT ${RUN_COLUMNS} FROM projection_entry_runs WHERE projection = ? AND last_position >= ? ORDER BY last_position LIMIT 1`,
      ),
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
      const docs = (this.stmt.docs.all(name) as [string, string, string][]).map(
        ([c, id, doc]) => [c, id, JSON.parse(doc)] as [string, string, unknown],
      )
      return {
        version: cp.version,
        position: cp.position,
        docs,
        ...(cp.indexed < cp.position ? { incomplete: true as const } : {}),
      }
    })()
  }

  async commit(changes: readonly ProjectionChanges[]): Promise<void> {
    const outcome = new Map<string, 'buffer' | 'written' | 'done'>()
    this.db
      .transaction(() => {
        for (const c of changes) {
          const stored = this.stmt.checkpoint.get(c.name) as { position: number; indexed: number } | undefined
          if (stored?.position !== c.expectedPosition) {
            throw new WrongExpectedRevisionError(
              `projection ${c.name}`,
              c.expectedPosition ?? 'no_stream',
              stored?.position ?? 'no_stream',
              'another process moved the checkpoint',
            )
          }
          for (const [collection, id, json] of c.puts) this.stmt.putDoc.run(c.name, collection, id, json)
          for (const [collection, id] of c.deletes) this.stmt.deleteDoc.run(c.name, collection, id)
          for (const columns of c.columns ?? [])
            for (const run of runsOfColumns(columns)) this.stmt.putRun.run(c.name, ...run)
          for (const run of runsOfEntries(c.entries)) this.stmt.putRun.run(c.name, ...run)
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
      })
      .immediate()
    for (const c of changes) {
      const what = outcome.get(c.name)
      if (what === 'done') {
        this.bulk.delete(c.name)
        continue
      }
      const state =
        what === 'buffer'
          ? (this.bulk.get(c.name) ?? { buffer: new PostingBuffer(true), position: 0 })
          : { buffer: new PostingBuffer(true), position: 0 }
      if (what === 'buffer') state.buffer.addChanges(c)
      state.position = c.position
      this.bulk.set(c.name, state)
    }
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
    this.db
      .transaction(() => {
        for (const [name, state] of this.bulk) {
          const stored = this.stmt.checkpoint.get(name) as { position: number } | undefined
          // moved by another writer: what was buffered no longer matches; load reports it
          if (stored?.position !== state.position) continue
          this.writePostings(name, state.buffer)
          this.stmt.setIndexed.run(state.position, name)
        }
      })
      .immediate()
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
    this.db
      .transaction(() => {
        for (const table of PROJECTION_TABLES) this.db.prepare(`DELETE FROM ${table} WHERE projection = ?`).run(name)
        this.db.prepare('DELETE FROM projection_checkpoints WHERE name = ?').run(name)
      })
      .immediate()
  }

  async forget(name: string, before: string): Promise<number> {
    const cutoff = Date.parse(before)
    const keyPrefix = FORGETTABLE_KEY_PREFIX
    // keys compare as bytes (BINARY): the prefix is the range [prefix, prefix + U+FFFF) of the primary key
    const rows = this.db
      .prepare(
        'SELECT key, last_position, postings FROM projection_postings WHERE projection = ? AND key >= ? AND key < ? AND min_time < ?',
      )
      .raw()
    const remove = this.db.prepare(
      'DELETE FROM projection_postings WHERE projection = ? AND key = ? AND last_position = ?',
    )
    return this.db
      .transaction(() => {
        let dropped = 0
        for (const [key, last, blob] of rows.all(name, keyPrefix, `${keyPrefix}\uffff`, cutoff) as Array<
          [string, number, Buffer]
        >) {
          const since = postingsSince(blob, cutoff)
          dropped += since.dropped
          remove.run(name, key, last)
          if (since.kept === undefined) continue
          const { list, minTime, maxTime } = since.kept
          this.stmt.putPostings.run(name, key, list[list.length - 2], minTime, maxTime, packPostings(list))
        }
        return dropped
      })
      .immediate()
  }

  private postings(name: string, key: string, since: number, until: number): Array<[position: number, ms: number]> {
    return postingsWithin(this.stmt.postings.all(name, key, since, until) as Buffer[], since, until)
  }

  async lookup(name: string, key: string, options: LookupOptions = {}): Promise<number[]> {
    const since = options.since === undefined ? Number.MIN_SAFE_INTEGER : Date.parse(options.since)
    const until = options.until === undefined ? Number.MAX_SAFE_INTEGER : Date.parse(options.until)
    const found = this.postings(name, key, since, until).sort((a, b) => a[1] - b[1] || a[0] - b[0])
    const positions = found.map(([position]) => position)
    return options.limit === undefined || options.limit < 0 ? positions : positions.slice(0, options.limit)
  }

  async positionOf(name: string, eventId: string): Promise<number | undefined> {
    for (const [position] of this.postings(
      name,
      eventBucket(eventId),
      Number.MIN_SAFE_INTEGER,
      Number.MAX_SAFE_INTEGER,
    )) {
      const found = this.entryIndex(name, position)
      if (found !== undefined && found[0].eventIds[found[1]] === eventId) return position
    }
    return undefined
  }

  async entryAt(name: string, position: number): Promise<StoredEntry | undefined> {
    const found = this.entryIndex(name, position)
    return found && entryOf(found[0], found[1], this.isoOf)
  }

  async entries(name: string, afterPosition: number, limit: number): Promise<StoredEntry[]> {
    const out: StoredEntry[] = []
    let after = afterPosition
    while (out.length < limit) {
      const run = this.runFrom(name, after + 1)
      if (run === undefined) break
      for (let i = 0; i < run.positions.length && out.length < limit; i++)
        if (run.positions[i]! > after) out.push(entryOf(run, i, this.isoOf))
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
