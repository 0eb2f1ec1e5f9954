import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'
import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { canonicalStoredEventText } from './canonical.ts'
import { CompactRange, eventLeaf, leafOfCanonicalText } from './merkle.ts'

// The Merkle leaf thread (see leaves.ts): a read-only connection of its own to the SQLite event
// store, answering a position range with the positions found, their 32-byte leaves and, for the
// positions that follow the range's start without a gap, the subtree hash each one's append to
// the tree produces. Leaves come from the same canonical bytes as eventLeaf: assembled from the
// stored text when the store writes canonical JSON (json=canonical), parsed and re-serialised
// otherwise.

export interface LeafRequest {
  id: number
  /** positions after `after`, up to and including `upTo` */
  after: number
  upTo: number
}

export interface LeafReply {
  id: number
  /** Float64Array of the positions found, ascending */
  positions: ArrayBuffer
  /** 32 bytes per position, in the same order */
  leaves: ArrayBuffer
  /** 32 bytes for each of the first `dense` positions (after + 1, after + 2, …): the root of the
   * perfect subtree that appending its leaf completes within the range (CompactRange.pushMerged) */
  merged: ArrayBuffer
  dense: number
}

export interface LeafWorkerData {
  file: string
}

if (!parentPort) throw new Error('leaf-thread.ts runs as a worker thread of the audit projection')
const port = parentPort
const { file } = workerData as LeafWorkerData
const db = new Database(file, { readonly: true, fileMustExist: true })
db.pragma('busy_timeout = 10000')
const canonical = db.prepare("SELECT value FROM kennel_meta WHERE key = 'json'").pluck().get() === 'canonical'
// the columns and their decoding of infra/eventstore/sqlite.ts (toRecorded)
const range = db.prepare('SELECT position, id, stream, revision, type, time, data, metadata FROM events WHERE position > ? AND position <= ? ORDER BY position').raw()
type Row = [position: number, id: string, stream: string, revision: number, type: string, time: string, data: string, metadata: string]

const leafOf = canonical
  ? (r: Row): Buffer => leafOfCanonicalText(canonicalStoredEventText(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]))
  : (r: Row): Buffer => {
      const e: RecordedEvent = { id: r[1], type: r[4], stream: r[2], revision: r[3], position: r[0], time: r[5], data: JSON.parse(r[6]), metadata: JSON.parse(r[7]) }
      return eventLeaf(e)
    }

port.on('message', (m: LeafRequest) => {
  const rows = range.all(m.after, m.upTo) as Row[]
  const positions = new Float64Array(rows.length)
  const leaves = new Uint8Array(rows.length * 32)
  const merged = new Uint8Array(rows.length * 32)
  const subtree = new CompactRange()
  let dense = 0
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!
    const leaf = leafOf(r)
    positions[i] = r[0]
    leaves.set(leaf, i * 32)
    if (dense === i && r[0] === m.after + 1 + i) {
      subtree.push(leaf)
      merged.set(subtree.stack[subtree.stack.length - 1]!, i * 32)
      dense++
    }
  }
  const reply: LeafReply = { id: m.id, positions: positions.buffer, leaves: leaves.buffer, merged: merged.buffer, dense }
  port.postMessage(reply, [positions.buffer, leaves.buffer, merged.buffer])
})
