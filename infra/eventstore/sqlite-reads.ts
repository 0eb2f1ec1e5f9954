import Database from 'better-sqlite3'
import { KennelError } from '../errors.ts'
import type { EventFilter, ReadAllOptions, ReadStreamOptions, RecordedEvent } from './port.ts'
import { COLUMNS, type Row } from './sqlite-schema.ts'

// Reads of the embedded event store (sqlite.ts): on the main thread's read connection, which in
// WAL mode sees every commit the writer thread has acknowledged (read-your-writes); and, for a
// thread that is not the store's, on a read-only connection of its own (openStoredEventReader).

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

/** The store's reads, on its read connection; the store checks it is open before each. */
export class SqliteReads {
  private readonly statements = new Map<string, Database.Statement>()

  constructor(private readonly db: Database.Database) {}

  readStream(stream: string, options: ReadStreamOptions): RecordedEvent[] {
    const backwards = options.direction === 'backwards'
    const limit = options.maxCount ?? -1
    const from = options.fromRevision
    const sql = backwards
      ? `SELECT ${COLUMNS} FROM events WHERE stream = ? ${from !== undefined ? 'AND revision <= ?' : ''} ORDER BY revision DESC LIMIT ?`
      : `SELECT ${COLUMNS} FROM events WHERE stream = ? AND revision >= ? ORDER BY revision ASC LIMIT ?`
    const args = backwards ? (from !== undefined ? [stream, from, limit] : [stream, limit]) : [stream, from ?? 0, limit]
    return (this.prepared(sql).all(...args) as Row[]).map(toRecorded)
  }

  /** `upTo`: forwards, only events with position <= upTo */
  readAll(options: ReadAllOptions, upTo = Number.MAX_SAFE_INTEGER): RecordedEvent[] {
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
