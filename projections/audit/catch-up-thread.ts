import { parentPort, workerData } from 'node:worker_threads'
import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { openStoredEventReader } from '../../infra/eventstore/sqlite.ts'
import { canonicalStoredEventText } from './canonical.ts'
import { headSizeOf, KEY_KINDS, visitKeys } from './lookup-keys.ts'
import { CompactRange, eventLeaf, leafOfCanonicalTextInto } from './merkle.ts'

// An audit catch-up thread (see catch-up-threads.ts): a read-only connection of its own to the
// SQLite event store (the adapter's openStoredEventReader, infra/eventstore/sqlite.ts), answering a
// range of positions with everything the audit projection takes from those events: positions, ids,
// times, Merkle leaves, the lookup keys of auditKeys and the tree heads among them, plus, for the
// positions that follow the range's start without a gap, the subtree hash each one's append to the
// tree produces. Leaves are the bytes eventLeaf hashes: assembled from the stored text when the
// store writes canonical JSON (json=canonical), parsed and re-serialised otherwise.

export interface ChunkRequest {
  id: number
  /** positions after `after`, up to and including `upTo` */
  after: number
  upTo: number
}

export interface ChunkReply {
  id: number
  /** Float64Array of the positions found, ascending */
  positions: ArrayBuffer
  /** one JSON array of the events' ids */
  eventIds: string
  /** the distinct event times, and each event's index into them (Int32Array) */
  times: string[]
  timeOf: ArrayBuffer
  /** 32 bytes per position */
  leaves: ArrayBuffer
  /** 32 bytes for each of the first `dense` positions (after + 1, after + 2, …): the root of the
   * perfect subtree that appending its leaf completes within the range (CompactRange.pushMerged) */
  merged: ArrayBuffer
  dense: number
  /** this thread's key table was cleared before this reply: ids start again from 0 */
  keysReset: boolean
  /** names of the key ids first used in this reply, in id order */
  newKeys: string[]
  /** every event's key ids, flattened (Int32Array); event i's are keys[keyStarts[i] … keyStarts[i + 1]) */
  keys: ArrayBuffer
  keyStarts: ArrayBuffer
  /** [index, size] of each TreeHeadSigned on the heads stream (size as its data names it) */
  heads: Array<[index: number, size: number]>
}

export interface CatchUpThreadData {
  file: string
}

/** key names a thread remembers before it starts its table again (bounds its memory) */
const MAX_KEYS = 200_000

if (!parentPort) throw new Error('catch-up-thread.ts runs as a worker thread of the audit projection')
const port = parentPort
const { file } = workerData as CatchUpThreadData
// the events as stored, through the adapter's reader: a read-only connection of this thread's own
const events = openStoredEventReader(file)
const { canonical } = events

/** key ids by value, per kind; ids count up across kinds */
const keyIds = KEY_KINDS.map(() => new Map<string, number>())
let keyCount = 0
let keysReset = false

port.on('message', (m: ChunkRequest) => {
  const rows = events.range(m.after, m.upTo)
  const n = rows.length
  const positions = new Float64Array(n)
  const ids: string[] = new Array(n)
  const times: string[] = []
  const timeOf = new Int32Array(n)
  const leaves = Buffer.from(new ArrayBuffer(n * 32))
  const merged = new Uint8Array(n * 32)
  const keyStarts = new Int32Array(n + 1)
  const keys: number[] = []
  const newKeys: string[] = []
  const heads: Array<[number, number]> = []
  const subtree = new CompactRange()
  let dense = 0
  for (let i = 0; i < n; i++) {
    const r = rows[i]!
    const [position, id, stream, revision, type, time] = r
    const data: unknown = JSON.parse(r[6])
    const metadata = JSON.parse(r[7]) as RecordedEvent['metadata']
    if (canonical)
      leafOfCanonicalTextInto(
        canonicalStoredEventText(position, id, stream, revision, type, time, r[6], r[7]),
        leaves,
        i * 32,
      )
    else leaves.set(eventLeaf({ id, type, stream, revision, position, time, data, metadata }), i * 32)
    const leaf = leaves.subarray(i * 32, i * 32 + 32)
    positions[i] = position
    ids[i] = id
    if (times.length === 0 || times[times.length - 1] !== time) times.push(time)
    timeOf[i] = times.length - 1
    if (dense === i && position === m.after + 1 + i) {
      subtree.push(leaf)
      merged.set(subtree.stack[subtree.stack.length - 1]!, i * 32)
      dense++
    }
    const event = { type, stream, data, metadata }
    visitKeys(event, (kind, value) => {
      const byValue = keyIds[kind]!
      let id = byValue.get(value)
      if (id === undefined) {
        byValue.set(value, (id = keyCount++))
        newKeys.push(`${KEY_KINDS[kind]}:${value}`)
      }
      keys.push(id)
    })
    keyStarts[i + 1] = keys.length
    const head = headSizeOf(event)
    if (head !== undefined) heads.push([i, head])
  }
  const keyArray = Int32Array.from(keys)
  const reply: ChunkReply = {
    id: m.id,
    positions: positions.buffer,
    eventIds: JSON.stringify(ids),
    times,
    timeOf: timeOf.buffer,
    leaves: leaves.buffer,
    merged: merged.buffer,
    dense,
    keysReset,
    newKeys,
    keys: keyArray.buffer,
    keyStarts: keyStarts.buffer,
    heads,
  }
  port.postMessage(reply, [
    positions.buffer,
    timeOf.buffer,
    leaves.buffer,
    merged.buffer,
    keyArray.buffer,
    keyStarts.buffer,
  ])
  keysReset = keyCount > MAX_KEYS
  if (keysReset) {
    for (const byValue of keyIds) byValue.clear()
    keyCount = 0
  }
})
