import { Worker } from 'node:worker_threads'
import type { EventStore } from '../../infra/eventstore/port.ts'
import type { CatchUpHelper } from '../projection.ts'
import type { CompactRange } from './merkle.ts'
import type { LeafReply, LeafRequest, LeafWorkerData } from './leaf-thread.ts'

// Merkle leaves computed off the main thread while the runner catches up on an embedded store
// (a rebuild): a worker thread reads the same event-store file through its own read-only
// connection and hashes each event's canonical bytes, a few chunks ahead of the runner, together
// with the tree's node hashes inside each chunk (chunks are 2^11 positions, aligned), so the main
// thread only looks a leaf up and hashes the few nodes above a chunk. Live events, PostgreSQL and EventStoreDB, short catch-ups and
// any failure of the thread fall back to hashing on the main thread (pushLeaf returns undefined);
// both paths use eventLeaf, so the leaves are the same bytes.

/** positions per request: a power of two, so that chunks are aligned subtrees of the Merkle tree */
const CHUNK = 2048
/** chunks requested ahead of the one being applied */
const AHEAD = 3
/** a shorter catch-up is not worth a thread's start */
export const MIN_CATCH_UP = 20_000

const WORKER_URL = new URL('./leaf-worker.js', import.meta.url)

interface Chunk {
  done: Promise<void>
  positions?: Float64Array
  leaves?: Buffer
  merged?: Buffer
  /** the first `dense` positions follow the chunk's start without a gap (LeafReply.dense) */
  dense: number
}

/** the file of an embedded event store (other adapters have none) */
function sqliteFileOf(store: EventStore): string | undefined {
  const file = store.kind === 'sqlite' ? store.file : undefined
  return file !== undefined && file !== '' && file !== ':memory:' && !file.startsWith('file:') ? file : undefined
}

export class LeafPrefetcher implements CatchUpHelper {
  /** threads started and leaves they provided in this process (tests) */
  static threadsStarted = 0
  static leavesProvided = 0
  private readonly worker: Worker
  private readonly chunks = new Map<number, Chunk>()
  private readonly waiting = new Map<number, () => void>()
  private readonly lastChunk: number
  private failed = false
  private current = -1
  /** the position before() was last called for: pushLeaf answers only for it, so a runner that
   * shares the projection object but did not start this catch-up never gets a leaf from it */
  private armed = -1
  private currentChunk: Chunk | undefined

  static start(store: EventStore, after: number, head: number): LeafPrefetcher | undefined {
    const file = sqliteFileOf(store)
    if (file === undefined || head - after < MIN_CATCH_UP) return undefined
    return new LeafPrefetcher(file, head)
  }

  private constructor(file: string, head: number) {
    this.lastChunk = chunkOf(head)
    LeafPrefetcher.threadsStarted++
    this.worker = new Worker(WORKER_URL, { workerData: { file } satisfies LeafWorkerData, execArgv: [] })
    this.worker.unref()
    this.worker.on('message', (reply: LeafReply) => this.received(reply))
    this.worker.on('error', () => this.fail())
    this.worker.on('exit', () => this.fail())
  }

  private received(reply: LeafReply): void {
    const chunk = this.chunks.get(reply.id)
    if (chunk) {
      chunk.positions = new Float64Array(reply.positions)
      chunk.leaves = Buffer.from(reply.leaves)
      chunk.merged = Buffer.from(reply.merged)
      chunk.dense = reply.dense
    }
    this.waiting.get(reply.id)?.()
    this.waiting.delete(reply.id)
  }

  /** from here on every leaf is computed by the projection itself */
  private fail(): void {
    this.failed = true
    this.chunks.clear()
    this.currentChunk = undefined
    for (const resolve of this.waiting.values()) resolve()
    this.waiting.clear()
  }

  private request(k: number): void {
    if (this.failed || k > this.lastChunk || this.chunks.has(k)) return
    const done = new Promise<void>((resolve) => this.waiting.set(k, resolve))
    this.chunks.set(k, { done, dense: 0 })
    this.worker.postMessage({ id: k, after: k * CHUNK, upTo: (k + 1) * CHUNK } satisfies LeafRequest)
  }

  before(position: number): Promise<void> | undefined {
    this.armed = position
    const k = chunkOf(position)
    if (k !== this.current) {
      this.chunks.delete(this.current)
      this.current = k
      for (let i = k; i <= k + AHEAD; i++) this.request(i)
      this.currentChunk = this.chunks.get(k)
    }
    const chunk = this.currentChunk
    return chunk === undefined || chunk.leaves !== undefined ? undefined : chunk.done
  }

  /** Append the leaf of the event at `position` to the tree when the thread has computed it, with
   * the thread's subtree hash when the tree's leaves line up with positions (every position
   * before this one holds an event); the leaf, or undefined when the caller has to hash it. */
  pushLeaf(tree: CompactRange, position: number): Buffer | undefined {
    const chunk = this.currentChunk
    if (position !== this.armed) return undefined
    this.armed = -1
    if (chunk?.leaves === undefined || chunk.positions === undefined || chunkOf(position) !== this.current) return undefined
    const i = indexOf(chunk.positions, position, position - 1 - this.current * CHUNK)
    if (i < 0) return undefined
    LeafPrefetcher.leavesProvided++
    const leaf = chunk.leaves.subarray(i * 32, i * 32 + 32)
    if (i < chunk.dense && tree.size === position - 1) tree.pushMerged(chunk.merged!.subarray(i * 32, i * 32 + 32), trailingOnes(i))
    else tree.push(leaf)
    return leaf
  }

  async stop(): Promise<void> {
    this.fail()
    await this.worker.terminate()
  }
}

const chunkOf = (position: number): number => Math.floor((position - 1) / CHUNK)

/** index of `position` in the ascending list, trying `guess` first (no gaps) */
function indexOf(positions: Float64Array, position: number, guess: number): number {
  if (positions[guess] === position) return guess
  let lo = 0
  let hi = positions.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const p = positions[mid]!
    if (p === position) return mid
    if (p < position) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

/** the subtrees a push at chunk index i completes within the chunk: the trailing one bits of i */
function trailingOnes(i: number): number {
  let n = 0
  while (i & 1) (n++, (i >>= 1))
  return n
}
