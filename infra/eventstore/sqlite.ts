import type Database from 'better-sqlite3'
import type { Worker } from 'node:worker_threads'
import { KennelError } from '../errors.ts'
import type {
  AppendOptions,
  AppendResult,
  EventFilter,
  EventStore,
  NewEvent,
  OpenOptions,
  ReadAllOptions,
  ReadStreamOptions,
  RecordedEvent,
  SubscribeOptions,
  Subscription,
} from './port.ts'
import { SqliteReads } from './sqlite-reads.ts'
import { openEventDatabase } from './sqlite-schema.ts'
import { WriterClient } from './sqlite-writer-client.ts'
import { LiveFeed } from './subscription.ts'

export { openStoredEventReader, type StoredEventReader, type StoredEventRow } from './sqlite-reads.ts'

// Embedded event store: one SQLite file in WAL mode, no network listener (R7).
//
// Writes run on a writer thread (sqlite-writer.js) that owns the only write connection:
// better-sqlite3 is synchronous, and an fsync under load (p99 16-60 ms here) would otherwise stop
// the whole event loop. Appends are validated and serialised on this thread, queued, and sent as
// one batch (group commit: one IMMEDIATE transaction, one fsync with synchronous=FULL); each keeps
// its own expected-revision and idempotency outcome. While one batch commits, the next
// accumulates; at most two are in flight. An append resolves only after the writer's COMMIT
// returned, so an acknowledged append survives kill -9 and power loss. This thread keeps a read
// connection (query_only) for reads: in WAL mode it sees every commit the writer has acknowledged
// (read-your-writes). Subscriptions are fed the events of each acknowledged batch as they were
// appended (subscription.ts), and read from this connection only what other processes wrote,
// noticed through the PRAGMA data_version poll or a gap before an acknowledged batch.
//
// This file is the store: its open, its live feed and the checks every call makes. The table and
// how the file is opened are in sqlite-schema.ts, the reads in sqlite-reads.ts, the main thread's
// side of the writer thread in sqlite-writer-client.ts, and the messages between the two in
// sqlite-writer-protocol.ts.

/** For tests: the writer thread of a SQLite event store, if it is running. */
export const writerThreadOf = (store: EventStore): Worker | undefined =>
  store instanceof SqliteEventStore ? store.writerThread : undefined

export interface SqliteOptions extends OpenOptions {
  /** interval at which commits by other processes are noticed (PRAGMA data_version) */
  pollMs?: number
}

export async function openSqliteEventStore(file: string, options: SqliteOptions): Promise<EventStore> {
  const { db, environment } = openEventDatabase(file, options.environment)
  const store = new SqliteEventStore(file, db, environment, options.pollMs ?? 10, options.appendVia)
  // wait for the writer's connection, so the first append does not pay for the thread's start
  // (often a fire-and-forget security event) and a writer that cannot start fails the open
  try {
    await store.writerReady()
  } catch (err) {
    await store.close()
    throw new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `event store ${file}: the writer thread did not start: ${(err as Error).message}`,
    )
  }
  return store
}

class SqliteEventStore implements EventStore {
  readonly kind = 'sqlite' as const
  private closed = false
  private readonly feed: LiveFeed
  private readonly reads: SqliteReads
  /** undefined when appends go to another handle (appendVia) */
  private readonly writes: WriterClient | undefined
  private dataVersion: number

  private readonly stmt

  constructor(
    readonly file: string,
    private readonly db: Database.Database,
    readonly environment: string,
    pollMs: number,
    private readonly appendVia?: OpenOptions['appendVia'],
  ) {
    this.reads = new SqliteReads(db)
    this.stmt = {
      head: db.prepare('SELECT coalesce(max(position), 0) FROM events').pluck(),
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
    }
    this.dataVersion = this.stmt.dataVersion.get() as number
    // other processes' commits (the CLI appending while the server runs) move data_version, and
    // so do ours: the feed reads only what no acknowledgement brought
    const source = {
      readRange: async (after: number, upTo: number, max: number, filter: EventFilter | undefined) => {
        this.assertOpen()
        return this.reads.readAll({ after, maxCount: max, filter }, upTo)
      },
      head: async () => {
        this.assertOpen()
        return this.stmt.head.get() as number
      },
    }
    this.feed = new LiveFeed(source, this.stmt.head.get() as number, {
      intervalMs: pollMs,
      tick: () => {
        const version = this.stmt.dataVersion.get() as number
        if (version === this.dataVersion) return
        this.dataVersion = version
        this.feed.poke()
      },
    })
    // a handle whose appends go to another handle has no writer of its own
    if (!appendVia) this.writes = new WriterClient(file, this.feed)
  }

  writerReady(): Promise<void> {
    return this.writes?.ready() ?? Promise.resolve()
  }

  get writerThread(): Worker | undefined {
    return this.writes?.thread
  }

  append(stream: string, events: readonly NewEvent[], options: AppendOptions = {}): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed'))
    if (this.appendVia) return this.appendVia(stream, events, options)
    return this.writes!.append(stream, events, options.expectedRevision ?? 'any')
  }

  async readStream(stream: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen()
    return this.reads.readStream(stream, options)
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen()
    return this.reads.readAll(options)
  }

  subscribe(options: SubscribeOptions): Subscription {
    this.assertOpen()
    return this.feed.subscribe(options)
  }

  async headPosition(): Promise<number> {
    this.assertOpen()
    return this.stmt.head.get() as number
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    // every append accepted before close is written (or rejected) before close resolves
    await this.writes?.drain()
    await this.feed.stopAll()
    // the read connection closes first, so the writer's connection is the last one and the
    // closing WAL checkpoint (an fsync) runs on the writer thread
    this.db.close()
    await this.writes?.close()
  }

  private assertOpen(): void {
    if (this.closed) throw new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed')
  }
}
