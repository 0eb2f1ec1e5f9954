import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { KennelError } from '../errors.ts'
import { preparePrivateDatabase } from './sqlite-file.ts'

// The table of the embedded event store (sqlite.ts) and how its file is opened: created private,
// tuned, brought to this layout, checked against the environment that created it, and left to the
// main thread as a read connection (every write goes through the writer thread, sqlite-writer.js).

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
export const COLUMNS = 'position, id, stream, revision, type, time, data, metadata'
export type Row = [
  position: number,
  id: string,
  stream: string,
  revision: number,
  type: string,
  time: string,
  data: string,
  metadata: string,
]

/** Open the store's file as the main thread's connection: `environment` is the one that created
 * the file (the opening one, for a new file); the connection is query_only once it returns. */
export function openEventDatabase(file: string, environment: string): { db: Database.Database; environment: string } {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  preparePrivateDatabase(file)
  const db = new Database(file)
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    db.pragma('busy_timeout = 10000')
    db.pragma('foreign_keys = ON')
    const stored = initialise(db, file, environment)
    // from here on this connection only reads; every write goes through the writer thread
    db.pragma('query_only = ON')
    return { db, environment: stored }
  } catch (err) {
    db.close()
    throw err
  }
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
