import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { WrongExpectedRevisionError } from '../../infra/eventstore/port.ts'
import type { LookupOptions, ProjectionChanges, ReadModelStore, StoredEntry, StoredProjection } from './port.ts'

// Embedded read models: a SQLite file beside the event store (never inside it, so the event
// store's immutability triggers and file stay untouched). WAL with synchronous=NORMAL: a power
// loss may drop the newest commits but never splits one, so the read model falls back to an
// older consistent checkpoint and the runner re-applies from there (outbox appends are
// idempotent); the events themselves are durable in the event store.

const SCHEMA = `
CREATE TABLE IF NOT EXISTS projection_checkpoints (name TEXT PRIMARY KEY, version INTEGER NOT NULL, position INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS projection_documents (
  projection TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,
  PRIMARY KEY (projection, collection, id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_entries (
  projection TEXT NOT NULL, position INTEGER NOT NULL, ordinal INTEGER NOT NULL, time TEXT NOT NULL, digest BLOB NOT NULL,
  PRIMARY KEY (projection, position)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_keys (
  projection TEXT NOT NULL, key TEXT NOT NULL, time TEXT NOT NULL, position INTEGER NOT NULL,
  PRIMARY KEY (projection, key, time, position)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) STRICT;
`

interface EntrySqlRow {
  ordinal: number
  position: number
  time: string
  digest: Buffer
}

export function openSqliteReadModels(file: string): ReadModelStore {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('busy_timeout = 10000')
  // the audit key index grows by several rows per event at scattered places: a page cache far
  // larger than the 2 MB default keeps its hot pages in memory during a rebuild
  db.pragma('cache_size = -131072')
  db.exec(SCHEMA)
  try {
    fs.chmodSync(file, 0o600)
  } catch {
    // not ours to chmod; the directory mode still protects it
  }
  return new SqliteReadModels(db)
}

class SqliteReadModels implements ReadModelStore {
  readonly kind = 'sqlite' as const
  private readonly stmt

  constructor(private readonly db: Database.Database) {
    this.stmt = {
      checkpoint: db.prepare('SELECT version, position FROM projection_checkpoints WHERE name = ?'),
      docs: db.prepare('SELECT collection, id, doc FROM projection_documents WHERE projection = ?').raw(),
      putDoc: db.prepare('INSERT OR REPLACE INTO projection_documents (projection, collection, id, doc) VALUES (?, ?, ?, ?)'),
      deleteDoc: db.prepare('DELETE FROM projection_documents WHERE projection = ? AND collection = ? AND id = ?'),
      putEntry: db.prepare('INSERT OR REPLACE INTO projection_entries (projection, position, ordinal, time, digest) VALUES (?, ?, ?, ?, ?)'),
      putKey: db.prepare('INSERT OR IGNORE INTO projection_keys (projection, key, time, position) VALUES (?, ?, ?, ?)'),
      putCheckpoint: db.prepare('INSERT OR REPLACE INTO projection_checkpoints (name, version, position) VALUES (?, ?, ?)'),
      entryAt: db.prepare('SELECT ordinal, position, time, digest FROM projection_entries WHERE projection = ? AND position = ?'),
      entries: db.prepare('SELECT ordinal, position, time, digest FROM projection_entries WHERE projection = ? AND position > ? ORDER BY position LIMIT ?'),
      cursor: db.prepare('SELECT position FROM projection_cursors WHERE name = ?').pluck(),
      setCursor: db.prepare('INSERT OR REPLACE INTO projection_cursors (name, position) VALUES (?, ?)'),
    }
  }

  async load(name: string): Promise<StoredProjection | undefined> {
    return this.db.transaction(() => {
      const cp = this.stmt.checkpoint.get(name) as { version: number; position: number } | undefined
      if (!cp) return undefined
      const docs = (this.stmt.docs.all(name) as [string, string, string][]).map(([c, id, doc]) => [c, id, JSON.parse(doc)] as [string, string, unknown])
      return { version: cp.version, position: cp.position, docs }
    })()
  }

  async commit(changes: readonly ProjectionChanges[]): Promise<void> {
    this.db.transaction(() => {
      for (const c of changes) {
        const stored = this.stmt.checkpoint.get(c.name) as { position: number } | undefined
        if (stored?.position !== c.expectedPosition) {
          throw new WrongExpectedRevisionError(`projection ${c.name}`, c.expectedPosition ?? 'no_stream', stored?.position ?? 'no_stream', 'another process moved the checkpoint')
        }
        for (const [collection, id, json] of c.puts) this.stmt.putDoc.run(c.name, collection, id, json)
        for (const [collection, id] of c.deletes) this.stmt.deleteDoc.run(c.name, collection, id)
        const keys: Array<[string, string, number]> = []
        for (const { position, time, entry } of c.entries) {
          this.stmt.putEntry.run(c.name, position, entry.ordinal, time, entry.digest)
          for (const key of entry.keys) keys.push([key, time, position])
        }
        // inserting in index order keeps the B-tree writes local
        keys.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[2] - b[2]))
        for (const [key, time, position] of keys) this.stmt.putKey.run(c.name, key, time, position)
        this.stmt.putCheckpoint.run(c.name, c.version, c.position)
      }
    }).immediate()
  }

  async reset(name: string): Promise<void> {
    this.db.transaction(() => {
      for (const table of ['projection_documents', 'projection_entries', 'projection_keys']) this.db.prepare(`DELETE FROM ${table} WHERE projection = ?`).run(name)
      this.db.prepare('DELETE FROM projection_checkpoints WHERE name = ?').run(name)
    }).immediate()
  }

  async lookup(name: string, key: string, options: LookupOptions = {}): Promise<number[]> {
    const sql = `SELECT position FROM projection_keys WHERE projection = ? AND key = ? AND time >= ? AND time < ? ORDER BY time, position LIMIT ?`
    return this.db.prepare(sql).pluck().all(name, key, options.since ?? '', options.until ?? '\uffff', options.limit ?? -1) as number[]
  }

  async entryAt(name: string, position: number): Promise<StoredEntry | undefined> {
    return this.stmt.entryAt.get(name, position) as EntrySqlRow | undefined
  }

  async entries(name: string, afterPosition: number, limit: number): Promise<StoredEntry[]> {
    return this.stmt.entries.all(name, afterPosition, limit) as EntrySqlRow[]
  }

  async cursor(name: string): Promise<number> {
    return (this.stmt.cursor.get(name) as number | undefined) ?? 0
  }

  async setCursor(name: string, position: number): Promise<void> {
    this.stmt.setCursor.run(name, position)
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close()
  }
}
