import { Worker } from 'node:worker_threads'
import { KennelError } from '../errors.ts'
import { CanonicalTextEvent, storedJson } from './canonical-json.ts'
import {
  type AppendResult,
  type EventMetadata,
  type NewEvent,
  type PreparedEvent,
  type RecordedEvent,
  checkExpectedRevision,
  classifyRetry,
  prepareAppend,
} from './port.ts'
import type { Expected, WriterData, WriterReply, WriterRequest, WriterOutcome } from './sqlite-writer-protocol.ts'
import type { AppendedEvent, LiveFeed } from './subscription.ts'

// The main thread's side of the embedded event store's writer thread (sqlite-writer.js): appends
// are validated and serialised here, queued, and sent as one batch per turn; while one batch
// commits, the next accumulates, at most two in flight. Each append resolves from the writer's
// reply, sent only after its COMMIT returned, and the live feed is given the events of each
// acknowledged batch. A writer that stops rejects what it had in flight; the next append starts
// a new one.

/** An event serialised before it is queued, so a bad value fails its own append, not a batch.
 * Once its batch is committed it knows where it was written, and is what the subscriptions of
 * this process are given: parsed once, when one of them wants it. */
class PendingEvent implements AppendedEvent {
  stream = ''
  revision = 0
  position = 0
  time = ''
  private event: RecordedEvent | undefined

  constructor(
    readonly id: string,
    readonly type: string,
    readonly data: string,
    readonly metadata: string,
  ) {}

  recorded(): RecordedEvent {
    // the texts were made here by storedJson: canonical, whatever the store's json mark says
    return (this.event ??= new CanonicalTextEvent(
      this.id,
      this.type,
      this.stream,
      this.revision,
      this.position,
      this.time,
      JSON.parse(this.data),
      JSON.parse(this.metadata) as EventMetadata,
      this.data,
      this.metadata,
    ))
  }
}

interface PendingAppend {
  stream: string
  events: PendingEvent[]
  expected: Expected
  resolve: (r: AppendResult) => void
  reject: (e: unknown) => void
}

interface InFlightBatch {
  batch: number
  /** the live feed's ticket for this batch */
  ticket: number
  appends: PendingAppend[]
  /** resolves once every append of the batch is settled (acknowledged, or rejected by a crash) */
  settled: Promise<void>
  done: () => void
}

interface WriterThread {
  worker: Worker
  /** in the order sent; the writer replies in the same order */
  inFlight: InFlightBatch[]
  dead: boolean
  closing: boolean
  exited: Promise<void>
  /** resolves when the writer has opened its connection; rejects if it stops before */
  ready: Promise<void>
  stopped?: (cause: Error) => void
}

/** batches in flight at once: one committing, one waiting in the writer's queue */
const MAX_IN_FLIGHT = 2

const WRITER_URL = new URL('./sqlite-writer.js', import.meta.url)

/** The store's appends, through its writer thread; the store checks it is open before each. */
export class WriterClient {
  private pending: PendingAppend[] = []
  private flushScheduled = false
  private writer: WriterThread | undefined
  private batchSeq = 0

  constructor(
    private readonly file: string,
    private readonly feed: LiveFeed,
  ) {
    this.writer = this.startWriter()
  }

  ready(): Promise<void> {
    return this.writer?.ready ?? Promise.resolve()
  }

  get thread(): Worker | undefined {
    return this.writer?.worker
  }

  append(stream: string, events: readonly NewEvent[], expected: Expected): Promise<AppendResult> {
    let prepared: PendingEvent[]
    try {
      prepared = prepareAppend(stream, events, expected).map(serialise)
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ stream, events: prepared, expected, resolve, reject })
      if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(() => {
          this.flushScheduled = false
          this.flush()
        })
      }
    })
  }

  /** Resolves once every append accepted so far is written (or rejected). */
  async drain(): Promise<void> {
    for (;;) {
      this.flush()
      const next = this.writer?.inFlight[0]
      if (!next) break
      await next.settled
    }
  }

  /** Stop the writer thread, once drained; its connection closes last (see the store's close). */
  async close(): Promise<void> {
    const writer = this.writer
    if (writer) {
      writer.closing = true
      writer.worker.ref()
      writer.worker.postMessage({ type: 'close' } satisfies WriterRequest)
      await writer.exited
      this.writer = undefined
    }
  }

  /** Send pending appends to the writer while it has room; the rest wait for an acknowledgement. */
  private flush(): void {
    while (this.pending.length > 0) {
      const writer = (this.writer ??= this.startWriter())
      if (writer.inFlight.length >= MAX_IN_FLIGHT) return
      const appends = this.pending
      this.pending = []
      this.send(writer, appends)
    }
  }

  private send(writer: WriterThread, appends: PendingAppend[]): void {
    const request: WriterRequest & { type: 'batch' } = {
      type: 'batch',
      batch: ++this.batchSeq,
      streams: [],
      expected: [],
      counts: [],
      events: [],
    }
    for (const a of appends) {
      request.streams.push(a.stream)
      request.expected.push(a.expected)
      request.counts.push(a.events.length)
      for (const e of a.events) request.events.push(e.id, e.type, e.data, e.metadata)
    }
    let done!: () => void
    const settled = new Promise<void>((r) => (done = r))
    writer.inFlight.push({ batch: request.batch, ticket: this.feed.sending(), appends, settled, done })
    // keep the process alive while appends await their acknowledgement, and only then
    if (writer.inFlight.length === 1) writer.worker.ref()
    writer.worker.postMessage(request)
  }

  private startWriter(): WriterThread {
    const worker = new Worker(WRITER_URL, {
      workerData: { file: this.file } satisfies WriterData,
      // plain JavaScript: no loader flags needed, whatever started this process
      execArgv: [],
      name: 'kennel-eventstore-writer',
    })
    worker.unref()
    let exited!: () => void
    let ready!: () => void
    let failed!: (err: Error) => void
    const writer: WriterThread = {
      worker,
      inFlight: [],
      dead: false,
      closing: false,
      exited: new Promise((r) => (exited = r)),
      ready: new Promise((resolve, reject) => ((ready = resolve), (failed = reject))),
    }
    writer.ready.catch(() => {}) // also reported to every append sent to it
    writer.stopped = failed
    worker.on('message', (reply: WriterReply) => (reply.type === 'ready' ? ready() : this.acknowledged(writer, reply)))
    worker.on('error', (err) => this.writerStopped(writer, err))
    worker.on('messageerror', (err) => {
      this.writerStopped(writer, err)
      void worker.terminate()
    })
    worker.on('exit', (code) => {
      if (!(writer.closing && code === 0)) this.writerStopped(writer, new Error(`exited with code ${code}`))
      exited()
    })
    return writer
  }

  private acknowledged(writer: WriterThread, reply: Exclude<WriterReply, { type: 'ready' }>): void {
    if (writer.dead) return
    const batch = writer.inFlight.shift()
    if (!batch || batch.batch !== reply.batch) {
      this.writerStopped(writer, new Error(`acknowledged batch ${reply.batch} out of order`))
      void writer.worker.terminate()
      return
    }
    if (writer.inFlight.length === 0) writer.worker.unref()
    // keep the writer busy: what accumulated during this commit goes out before anyone is woken
    this.flush()
    if (reply.type === 'failed') {
      const error = new KennelError(
        'KENNEL_ERR_UNAVAILABLE',
        `event store commit failed, nothing of this append was stored: ${reply.message}`,
        { sqliteCode: reply.code },
      )
      for (const a of batch.appends) a.reject(error)
      batch.done()
      this.feed.settled(batch.ticket, [])
      return
    }
    const written: PendingEvent[] = []
    let special = 0
    for (let i = 0; i < batch.appends.length; i++) {
      const a = batch.appends[i]!
      const o = reply.outcomes[special]
      if (o?.index === i) {
        special++
        try {
          a.resolve(settleOutcome(a, o))
        } catch (err) {
          a.reject(err)
        }
        continue
      }
      const revision = reply.ok[2 * i]!
      const position = reply.ok[2 * i + 1]!
      a.resolve({ nextExpectedRevision: revision, position })
      // one transaction, one writer: an append's events have consecutive positions
      const n = a.events.length
      for (let k = 0; k < n; k++) {
        const e = a.events[k]!
        e.stream = a.stream
        e.revision = revision - n + 1 + k
        e.position = position - n + 1 + k
        e.time = reply.time
        written.push(e)
      }
    }
    batch.done()
    this.feed.settled(batch.ticket, written)
  }

  /** The writer crashed or stopped: everything sent to it has an unknown outcome. */
  private writerStopped(writer: WriterThread, cause: Error): void {
    if (writer.dead) return
    writer.dead = true
    writer.stopped?.(cause)
    if (this.writer === writer) this.writer = undefined
    const lost = writer.inFlight
    writer.inFlight = []
    writer.worker.unref()
    const count = lost.reduce((n, b) => n + b.appends.length, 0)
    const error = new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `the event store's writer thread stopped (${cause.message}); ${count} append(s) in flight may or may not be stored: retrying them with the same event ids is safe`,
      { cause: cause.message },
    )
    for (const b of lost) {
      for (const a of b.appends) a.reject(error)
      b.done()
      this.feed.settled(b.ticket, [])
    }
    // some of those may have committed before the crash
    if (count > 0) this.feed.poke()
    // appends not yet sent go to a new writer
    if (this.pending.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => {
        this.flushScheduled = false
        this.flush()
      })
    }
  }
}

/** Turn what the writer reported about an append that was not simply written into its result or
 * its typed error, with the port's own rules. */
function settleOutcome(a: PendingAppend, o: WriterOutcome): AppendResult {
  switch (o.kind) {
    case 'retry': {
      const result = classifyRetry(
        a.stream,
        a.expected,
        o.stored.map((s) => s ?? undefined),
        o.current,
      )
      if (result) return result
      break
    }
    case 'expected':
      checkExpectedRevision(a.stream, a.expected, o.current)
      break
    case 'duplicate':
      throw new KennelError(
        'KENNEL_ERR_DUPLICATE_EVENT',
        `append to ${a.stream}: some event ids are already stored, others are not, or they are stored elsewhere`,
        { stream: a.stream },
      )
    case 'error':
      throw Object.assign(new Error(o.message), { name: 'SqliteError', code: o.code })
  }
  throw new KennelError(
    'KENNEL_ERR_INTERNAL',
    `append to ${a.stream}: the writer thread and the port disagree about its outcome (${o.kind})`,
  )
}

function serialise(e: PreparedEvent): PendingEvent {
  try {
    const data = storedJson(e.data)
    const metadata = storedJson(e.metadata)
    if (data === undefined || metadata === undefined) throw new Error('it has no JSON form')
    return new PendingEvent(e.id, e.type, data, metadata)
  } catch (err) {
    throw new KennelError(
      'KENNEL_ERR_VALIDATION',
      `event ${e.type} cannot be stored as JSON: ${(err as Error).message}`,
    )
  }
}
