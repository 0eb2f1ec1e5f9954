import { timesInMs, unpackPostings } from './packing.ts'
import type { EntryColumns, EntryRow, ProjectionChanges } from './port.ts'

// The key index of the embedded read models: a set of posting lists, one row of
// projection_postings per (key, run of positions) holding the positions and event times (ms) of
// that run, so a batch writes one row per distinct key instead of one per (key, event), and a
// from-zero load writes each key's postings once (PostingBuffer). Event ids are indexed the same
// way under a bucket key (the id's first hex digits), resolved against the id stored with the
// entry (sqlite-runs.ts).

/** postings buffered by a from-zero load before they are written in the same transaction as a
 * checkpoint (bounds memory; each flush writes one row per key) */
export const MAX_BUFFERED_POSTINGS = 4_000_000

/** event ids are indexed under their first 4 hex digits: 65,536 buckets */
export const eventBucket = (eventId: string): string => `\u0000event:${eventId.slice(0, 4).toLowerCase()}`

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
export class PostingBuffer {
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
    if (n === 0)
      this.blocks.push({
        keyOf: new Int32Array(BLOCK),
        positions: new Float64Array(BLOCK),
        times: new Float64Array(BLOCK),
      })
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
    for (const k of mergeByName(buckets, named, name))
      yield [name(k), out.subarray(2 * start[k]!, 2 * start[k + 1]!), min[k]!, max[k]!]
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

/** the postings of rows of one key within [since, until) (ms), as [position, ms] in row order */
export function postingsWithin(
  blobs: readonly Buffer[],
  since: number,
  until: number,
): Array<[position: number, ms: number]> {
  const out: Array<[number, number]> = []
  for (const blob of blobs) {
    const list = unpackPostings(blob)
    for (let i = 0; i < list.length; i += 2) {
      const ms = list[i + 1]!
      if (ms >= since && ms < until) out.push([list[i]!, ms])
    }
  }
  return out
}

/** a posting list without its postings of events before `cutoff` (ms): how many were dropped,
 * and what is kept with its time range (undefined when nothing is) */
export function postingsSince(
  blob: Buffer,
  cutoff: number,
): { dropped: number; kept?: { list: Float64Array; minTime: number; maxTime: number } } {
  const list = unpackPostings(blob)
  const kept: number[] = []
  for (let i = 0; i < list.length; i += 2) if (list[i + 1]! >= cutoff) kept.push(list[i]!, list[i + 1]!)
  const dropped = (list.length - kept.length) / 2
  if (kept.length === 0) return { dropped }
  const times = kept.filter((_, i) => i % 2 === 1)
  return { dropped, kept: { list: Float64Array.from(kept), minTime: Math.min(...times), maxTime: Math.max(...times) } }
}
