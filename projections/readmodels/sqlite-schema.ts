import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { preparePrivateDatabase } from '../../infra/eventstore/sqlite-file.ts'

// The tables of the embedded read models (projections/readmodels/sqlite.ts) and how a file is
// opened: created private, tuned, and brought to this layout. A file of an earlier layout has its
// read models dropped, and the runner rebuilds them from the event store.

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
const REBUILT_ON_UPGRADE = [
  'projection_checkpoints',
  'projection_documents',
  'projection_entries',
  'projection_entry_runs',
  'projection_keys',
  'projection_postings',
]

/** the tables that hold a projection's read model, by its name in their `projection` column */
export const PROJECTION_TABLES = ['projection_documents', 'projection_entry_runs', 'projection_postings'] as const

/** the read-model file, created private (mode 0600 in a 0700 directory) and in this layout */
export function openReadModelDatabase(file: string): Database.Database {
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
  return db
}
