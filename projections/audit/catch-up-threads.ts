import os from 'node:os'
import { Worker } from 'node:worker_threads'
import type { EventStore } from '../../infra/eventstore/port.ts'
import type { ChunkReply, ChunkRequest, CatchUpThreadData } from './catch-up-thread.ts'

// A long catch-up of the audit log on an embedded store (a rebuild, a restart far behind) reads
// its events on other threads: each catch-up thread opens its own read-only connection to the
// event-store file and turns a chunk of positions into what the audit projection takes from
// them (ids, times, Merkle leaves and the node hashes inside the chunk, lookup keys, tree heads),
// a few chunks ahead of the runner, so the main thread neither reads nor hashes those events.
// Chunks are 2^11 positions, aligned, so that each is a subtree of the Merkle tree. Live events,
// PostgreSQL and EventStoreDB stores, short catch-ups and a failed thread are applied from the
// events on the main thread; both give the same bytes.

/** positions per chunk: a power of two, so that chunks are aligned subtrees of the Merkle tree */
const CHUNK = 2048
/** chunks requested ahead of the one being applied, per thread */
const AHEAD = 4
/** a shorter catch-up is not worth the threads' start */
export const MIN_CATCH_UP = 20_000

const WORKER_URL = new URL('./catch-up-worker.js', import.meta.url)

/** A chunk as the projection applies it: the positions found up to `upTo` (its last position);
 * the columns of EntryColumns, each event's time and key ids resolved against its thread's
 * key-name table. */
export interface AuditChunk {
  upTo: number
  positions: Float64Array
  eventIds: string[]
  times: string[]
  leaves: Buffer
  merged: Buffer
  dense: number
  keyNames: readonly string[]
  keys: Int32Array
  keyStarts: Int32Array
  /** tree size named by the head at an index, for the TreeHeadSigned events of the chunk */
  heads: Map<number, number>
}

interface Pending {
  done: Promise<AuditChunk | undefined>
  resolve: (chunk: AuditChunk | undefined) => void
}

/** the file of an embedded event store (other adapters have none) */
function sqliteFileOf(store: EventStore): string | undefined {
  const file = store.kind === 'sqlite' ? store.file : undefined
  return file !== undefined && file !== '' && file !== ':memory:' && !file.startsWith('file:') ? file : undefined
}

export class AuditCatchUpThreads {
  /** threads started and chunks they provided in this process, and a hook to see the threads (tests) */
  static threadsStarted = 0
  static chunksProvided = 0
  static onStart: ((threads: readonly Worker[]) => void) | undefined
  private readonly workers: Worker[] = []
  /** per thread: its key names by id */
  private readonly names: string[][] = []
  private readonly pending = new Map<number, Pending>()
  private readonly lastChunk: number
  private failed = false

  static start(
    store: EventStore,
    after: number,
    head: number,
    threads = defaultThreads(),
  ): AuditCatchUpThreads | undefined {
    const file = sqliteFileOf(store)
    if (file === undefined || head - after < MIN_CATCH_UP) return undefined
    return new AuditCatchUpThreads(file, head, threads)
  }

  private constructor(file: string, head: number, threads: number) {
    this.lastChunk = chunkOf(head)
    for (let w = 0; w < threads; w++) {
      AuditCatchUpThreads.threadsStarted++
      const worker = new Worker(WORKER_URL, {
        workerData: { file } satisfies CatchUpThreadData,
        execArgv: [],
        name: `kennel-audit-catch-up-${w}`,
      })
      worker.unref()
      worker.on('message', (reply: ChunkReply) => this.received(w, reply))
      worker.on('error', () => this.fail())
      worker.on('exit', () => this.fail())
      this.workers.push(worker)
      this.names.push([])
    }
    AuditCatchUpThreads.onStart?.(this.workers)
  }

  /** the chunk holding `position` (requesting the next ones); undefined once the threads failed */
  chunkAt(position: number): Promise<AuditChunk | undefined> {
    const k = chunkOf(position)
    for (const key of this.pending.keys()) if (key < k) this.pending.delete(key)
    for (let i = k; i <= k + AHEAD * this.workers.length; i++) this.request(i)
    return this.pending.get(k)?.done ?? Promise.resolve(undefined)
  }

  private request(k: number): void {
    if (this.failed || k > this.lastChunk || this.pending.has(k)) return
    let resolve!: Pending['resolve']
    const done = new Promise<AuditChunk | undefined>((r) => (resolve = r))
    this.pending.set(k, { done, resolve })
    this.workers[k % this.workers.length]!.postMessage({
      id: k,
      after: k * CHUNK,
      upTo: (k + 1) * CHUNK,
    } satisfies ChunkRequest)
  }

  /** replies arrive in each thread's own order, which is the order its key-name table grew in:
   * a table that starts again is a new array, so chunks already received keep theirs */
  private received(w: number, r: ChunkReply): void {
    if (r.keysReset) this.names[w] = []
    const names = this.names[w]!
    for (const name of r.newKeys) names.push(name)
    const timeOf = new Int32Array(r.timeOf)
    const times: string[] = new Array(timeOf.length)
    for (let i = 0; i < timeOf.length; i++) times[i] = r.times[timeOf[i]!]!
    const chunk: AuditChunk = {
      upTo: (r.id + 1) * CHUNK,
      positions: new Float64Array(r.positions),
      eventIds: JSON.parse(r.eventIds) as string[],
      times,
      leaves: Buffer.from(r.leaves),
      merged: Buffer.from(r.merged),
      dense: r.dense,
      keyNames: names,
      keys: new Int32Array(r.keys),
      keyStarts: new Int32Array(r.keyStarts),
      heads: new Map(r.heads),
    }
    AuditCatchUpThreads.chunksProvided++
    this.pending.get(r.id)?.resolve(chunk)
  }

  /** from here on the events are applied on the main thread */
  private fail(): void {
    if (this.failed) return
    this.failed = true
    for (const p of this.pending.values()) p.resolve(undefined)
    this.pending.clear()
  }

  async stop(): Promise<void> {
    this.fail()
    await Promise.all(this.workers.map((w) => w.terminate()))
  }
}

const chunkOf = (position: number): number => Math.floor((position - 1) / CHUNK)

/** two threads where there are two cores: measured on two, a second thread shortens a rebuild
 * (the main thread applies and writes while the two read and hash); one on a single core */
function defaultThreads(): number {
  return Math.min(2, os.availableParallelism())
}
