import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'
import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { eventLeaf } from './merkle.ts'

// The Merkle leaf thread (see leaves.ts): a read-only connection of its own to the SQLite event
// store, answering a position range with the positions found and their 32-byte leaves, computed
// by the same eventLeaf as the audit projection (the same canonical bytes, so the same leaves).

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
}

export interface LeafWorkerData {
  file: string
}

if (!parentPort) throw new Error('leaf-thread.ts runs as a worker thread of the audit projection')
const port = parentPort
const { file } = workerData as LeafWorkerData
const db = new Database(file, { readonly: true, fileMustExist: true })
db.pragma('busy_timeout = 10000')
// the columns and their decoding of infra/eventstore/sqlite.ts (toRecorded)
const range = db.prepare('SELECT position, id, stream, revision, type, time, data, metadata FROM events WHERE position > ? AND position <= ? ORDER BY position').raw()
type Row = [position: number, id: string, stream: string, revision: number, type: string, time: string, data: string, metadata: string]

port.on('message', (m: LeafRequest) => {
  const rows = range.all(m.after, m.upTo) as Row[]
  const positions = new Float64Array(rows.length)
  const leaves = new Uint8Array(rows.length * 32)
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!
    const e: RecordedEvent = { id: r[1], type: r[4], stream: r[2], revision: r[3], position: r[0], time: r[5], data: JSON.parse(r[6]), metadata: JSON.parse(r[7]) }
    positions[i] = r[0]
    leaves.set(eventLeaf(e), i * 32)
  }
  const reply: LeafReply = { id: m.id, positions: positions.buffer, leaves: leaves.buffer }
  port.postMessage(reply, [positions.buffer, leaves.buffer])
})
