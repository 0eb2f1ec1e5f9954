// @ts-check
// The embedded event store's writer thread (see sqlite.ts). It owns the only write connection:
// each message is a batch of appends the main thread has already validated and serialised; the
// batch runs in one IMMEDIATE transaction (one fsync with synchronous=FULL) and the reply, sent
// only after COMMIT returned, carries each append's own outcome. better-sqlite3 is synchronous,
// so the fsync blocks this thread instead of the server's event loop.
//
// Plain JavaScript on purpose: a worker does not inherit a loader registered with
// tsx's register() (bin/kennel.js), so a .ts worker would need its own loader flags and would
// break whenever the process was started some other way. Outcome decisions that need error
// classes (expected-revision conflicts, idempotent retries) are only reported here as facts; the
// main thread turns them into results or typed errors with the port's own functions.

import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'

/** @typedef {import('./sqlite.ts').WriterRequest} WriterRequest */
/** @typedef {import('./sqlite.ts').WriterReply} WriterReply */
/** @typedef {import('./sqlite.ts').WriterOutcome} WriterOutcome */
/** @typedef {import('./sqlite.ts').WriterData} WriterData */
/** @typedef {Extract<WriterRequest, { type: 'batch' }>} BatchRequest */
/** @typedef {BatchRequest['expected'][number]} Expected */

if (!parentPort) throw new Error('sqlite-writer.js runs as a worker thread of the SQLite event store')
const port = parentPort
const { file } = /** @type {WriterData} */ (workerData)

const db = new Database(file, { fileMustExist: true })
db.pragma('journal_mode = WAL')
db.pragma('synchronous = FULL')
db.pragma('busy_timeout = 10000')

const stmt = {
  lastRevision: db.prepare('SELECT max(revision) AS r FROM events WHERE stream = ?').pluck(),
  locate: db.prepare('SELECT stream, revision, position FROM events WHERE id = ?'),
  insert: db.prepare(
    'INSERT INTO events (id, stream, revision, type, time, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)',
  ),
  savepoint: db.prepare('SAVEPOINT append'),
  release: db.prepare('RELEASE append'),
  rollbackTo: db.prepare('ROLLBACK TO append'),
}

/** Thrown inside an append when a later event id is already stored: a partial overlap. */
class PartialOverlap extends Error {}

/**
 * The same rule as checkExpectedRevision in port.ts; when it says no, the main thread calls that
 * function with the reported revision to raise the typed conflict (and treats disagreement as a bug).
 * @param {Expected} expected
 * @param {number} current revision of the stream's last event, -1 when there is none
 */
function expectedMatches(expected, current) {
  if (expected === 'any') return true
  if (expected === 'no_stream') return current < 0
  if (expected === 'stream_exists') return current >= 0
  return expected === current
}

/**
 * Run one batch in one transaction. `ok` gets [revision, position] per written append; every
 * other append gets an entry in `outcomes`.
 * @param {BatchRequest} req
 * @returns {WriterReply}
 */
function runBatch(req) {
  const n = req.streams.length
  const ok = new Float64Array(2 * n).fill(Number.NaN)
  /** @type {WriterOutcome[]} */
  const outcomes = []
  let written = 0
  const time = new Date().toISOString()
  db.transaction(() => {
    let e = 0
    for (let i = 0; i < n; i++) {
      const count = req.counts[i] ?? 0
      const first = e
      e += count
      // a single-event append either writes its one row or fails before writing: only
      // multi-event appends need a savepoint to undo a partial write
      const guarded = count > 1
      if (guarded) stmt.savepoint.run()
      try {
        const outcome = appendOne(req, i, first, count, time, ok)
        if (outcome) outcomes.push(outcome)
        else written++
        if (guarded) stmt.release.run()
      } catch (error) {
        if (guarded) {
          stmt.rollbackTo.run()
          stmt.release.run()
        }
        if (error instanceof PartialOverlap) outcomes.push({ index: i, kind: 'duplicate' })
        else
          outcomes.push({
            index: i,
            kind: 'error',
            message: String(/** @type {Error} */ (error)?.message ?? error),
            code: /** @type {{ code?: string }} */ (error)?.code,
          })
      }
    }
  }).immediate()
  return { type: 'done', batch: req.batch, ok, outcomes, written, time }
}

/**
 * @param {BatchRequest} req
 * @param {number} i index of the append in the batch
 * @param {number} first index of its first event in the batch
 * @param {number} count how many events it has
 * @param {string} time
 * @param {Float64Array} ok
 * @returns {WriterOutcome | undefined} undefined when the append was written
 */
function appendOne(req, i, first, count, time, ok) {
  const stream = /** @type {string} */ (req.streams[i])
  const last = /** @type {number | null} */ (stmt.lastRevision.get(stream))
  const current = last ?? -1
  const ev = req.events
  // the common case is a new append: look up only the first id, and let the UNIQUE index
  // catch a later id that is already stored (a partial overlap)
  if (stmt.locate.get(ev[4 * first]) !== undefined) {
    const stored = []
    for (let k = first; k < first + count; k++)
      stored.push(
        /** @type {{ stream: string, revision: number, position: number } | undefined} */ (
          stmt.locate.get(ev[4 * k])
        ) ?? null,
      )
    return { index: i, kind: 'retry', current, stored }
  }
  const expected = /** @type {Expected} */ (req.expected[i])
  if (!expectedMatches(expected, current)) return { index: i, kind: 'expected', current }
  let revision = current
  let position = 0
  for (let k = first; k < first + count; k++) {
    revision++
    try {
      position = Number(
        stmt.insert.run(ev[4 * k], stream, revision, ev[4 * k + 1], time, ev[4 * k + 2], ev[4 * k + 3]).lastInsertRowid,
      )
    } catch (err) {
      if (
        /** @type {{ code?: string }} */ (err).code === 'SQLITE_CONSTRAINT_UNIQUE' &&
        /events\.id/.test(/** @type {Error} */ (err).message)
      )
        throw new PartialOverlap()
      throw err
    }
  }
  ok[2 * i] = revision
  ok[2 * i + 1] = position
  return undefined
}

port.postMessage(/** @type {WriterReply} */ ({ type: 'ready' }))

port.on('message', (/** @type {WriterRequest} */ req) => {
  if (req.type === 'close') {
    // the main connection is closed first, so this is the last one: SQLite checkpoints the WAL
    // here, off the main thread
    db.close()
    port.close()
    return
  }
  /** @type {WriterReply} */
  let reply
  try {
    reply = runBatch(req)
  } catch (error) {
    // BEGIN IMMEDIATE timed out, or COMMIT failed: the transaction was rolled back, nothing of
    // this batch is stored
    reply = {
      type: 'failed',
      batch: req.batch,
      message: String(/** @type {Error} */ (error)?.message ?? error),
      code: /** @type {{ code?: string }} */ (error)?.code,
    }
  }
  port.postMessage(reply, reply.type === 'done' ? [/** @type {ArrayBuffer} */ (reply.ok.buffer)] : [])
})
