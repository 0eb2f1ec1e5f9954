import { threadId, Worker } from 'node:worker_threads'
import type { Config } from '../infra/config.ts'
import { KennelError, type ErrorCode } from '../infra/errors.ts'
import type { AppendOptions, AppendResult, EventStore, NewEvent } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { auditSigner } from '../projections/catalogue.ts'
import { startAlertDelivery } from '../projections/monitor/delivery.ts'
import type { EntryLookups, ReadModelStore } from '../projections/readmodels/port.ts'
import { type Lag, startProjectionRunner } from '../projections/runner.ts'
import { persistentProjections } from './read-models.ts'
import { startRecordingRetention } from '../api/recordings/retention.ts'
import { startTelemetryRetention } from '../projections/audit/telemetry-retention.ts'
import { loadMasterKey } from '../infra/blobstore/keys.ts'
import { openBlobStore } from '../infra/blobstore/open.ts'

// The projector role: the persistent read models with their checkpoints, the tamper-evident
// audit log and its signed heads, the security monitor (R11, R17), and the delivery of its
// alerts to the log and the webhook.

/** what the rest of the process sees of a projector, wherever it runs (this thread, a worker) */
export interface Projector {
  /** resolves once the read models have applied every event that existed at start */
  readonly caughtUp: Promise<void>
  /** resolves once the read models have committed everything up to `position` */
  waitFor(position: number, timeoutMs?: number): Promise<void>
  /** how far the read models are behind the store (metrics) */
  lag(): Promise<Lag>
  /** lag as of the last `lag()` call, for synchronous gauges */
  readonly lastLag: Lag
  /** the thread that applies events and writes the read models */
  readonly threadId: number
  stop(): Promise<void>
}

export async function startProjector(
  config: Config,
  store: EventStore,
  readModels: ReadModelStore & EntryLookups,
  log: Logger,
): Promise<Projector> {
  const runner = await startProjectionRunner({
    store,
    readModels,
    projections: persistentProjections(config, auditSigner(config)),
    log: log.child({ component: 'projections' }),
  })
  try {
    const alerts = await startAlertDelivery({
      store,
      readModels,
      log: log.child({ component: 'alerts' }),
      webhook: config.alertWebhook,
    })
    // R12: recordings older than KENNEL_RETENTION_RECORDINGS_DAYS are deleted (api/recordings/retention.ts)
    const retention = startRecordingRetention({
      store,
      blobs: openBlobStore(config, loadMasterKey(config)),
      retentionDays: config.retentionRecordingsDays,
      log: log.child({ component: 'retention' }),
    })
    // R12: the audit log's index of per-message metadata is kept KENNEL_RETENTION_TELEMETRY_DAYS
    const telemetry = startTelemetryRetention({
      readModels,
      retentionDays: config.retentionTelemetryDays,
      log: log.child({ component: 'retention' }),
    })
    return {
      caughtUp: runner.caughtUp,
      waitFor: (position, timeoutMs) => runner.waitFor(position, timeoutMs),
      lag: () => runner.lag(),
      get lastLag() {
        return runner.lastLag
      },
      threadId,
      async stop() {
        await telemetry.stop()
        await retention.stop()
        await alerts.stop()
        await runner.stop()
      },
    }
  } catch (err) {
    await runner.stop()
    throw err
  }
}

// The projector on a thread of its own (bin/projector-thread.ts), as `kennel start` runs it
// beside a broker or an API: what it costs (read-model transactions, audit hashing, alert posts)
// leaves the thread that serves toys. It has its own event store handle and read-model
// connection; the API reads the read models through its own (SQLite WAL lets readers see each
// commit as a whole). Its appends are made by the main thread's store (`append` messages): on
// the embedded store its handle then needs no writer thread of its own (about 10 MB).

export interface ProjectorWorkerData {
  config: Config
  logLevel: string
}

export type ProjectorRequest =
  | { type: 'waitFor'; id: number; position: number; timeoutMs?: number }
  | { type: 'lag'; id: number }
  | { type: 'stop' }
  /** the outcome of an append the thread handed over */
  | { type: 'appended'; id: number; result: AppendResult }
  | { type: 'appended'; id: number; error: { message: string; code?: string; details?: Record<string, unknown> } }

export type ProjectorReply =
  | { type: 'ready' }
  | { type: 'caughtUp' }
  | { type: 'failed'; message: string; code?: string }
  | { type: 'log'; line: string }
  | { type: 'reply'; id: number; ok: boolean; message?: string; lag?: Lag }
  | { type: 'stopped' }
  /** an append of the projections (alerts, signed tree heads, retention), made by this thread's
   * store: on the embedded store, appended by the main thread's handle and its writer thread */
  | { type: 'append'; id: number; stream: string; events: NewEvent[]; options: AppendOptions }

const WORKER_URL = new URL('./projector-worker.js', import.meta.url)
/** The thread's young generation (V8's default grows to 48 MB, held for the life of the process
 * once a catch-up has grown it): 8 MB took 9 MB off the resident size of an idle `kennel start`
 * holding the bench's 2,100 toys, for about 7% more CPU in a rebuild of every read model
 * (docs/PERFORMANCE.md). */
export const PROJECTOR_YOUNG_GENERATION_MB = 8
/** a stop that takes longer (a webhook retrying, a huge final commit) ends the thread */
const STOP_DEADLINE_MS = 30_000

/** for tests: sees the projector's thread when it starts */
export const projectorThreadHooks: { onStart?: (worker: Worker) => void } = {}

export async function startProjectorThread(config: Config, log: Logger, store: EventStore): Promise<Projector> {
  const worker = new Worker(WORKER_URL, {
    workerData: { config, logLevel: log.level } satisfies ProjectorWorkerData,
    execArgv: [],
    name: 'kennel-projector',
    resourceLimits: { maxYoungGenerationSizeMb: PROJECTOR_YOUNG_GENERATION_MB },
  })
  projectorThreadHooks.onStart?.(worker)
  const calls = new Map<
    number,
    { resolve: (reply: Extract<ProjectorReply, { type: 'reply' }>) => void; reject: (err: Error) => void }
  >()
  let seq = 0
  let lastLag: Lag = { events: 0, seconds: 0 }
  let stopping = false
  let resolveCaughtUp!: () => void
  let rejectCaughtUp!: (err: Error) => void
  const caughtUp = new Promise<void>((resolve, reject) => ((resolveCaughtUp = resolve), (rejectCaughtUp = reject)))
  caughtUp.catch(() => undefined)
  let resolveStopped!: () => void
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve))
  const ready = new Promise<void>((resolve, reject) => {
    worker.on('message', (m: ProjectorReply) => {
      switch (m.type) {
        case 'log':
          return relay(log, m.line)
        case 'ready':
          return resolve()
        case 'caughtUp':
          return resolveCaughtUp()
        case 'failed': {
          const err = m.code !== undefined ? new KennelError(m.code as ErrorCode, m.message) : new Error(m.message)
          rejectCaughtUp(err)
          return reject(err)
        }
        case 'reply': {
          const call = calls.get(m.id)
          calls.delete(m.id)
          return call?.resolve(m)
        }
        case 'stopped':
          return resolveStopped()
        case 'append':
          return void store.append(m.stream, m.events, m.options).then(
            (result) => worker.postMessage({ type: 'appended', id: m.id, result } satisfies ProjectorRequest),
            (err: unknown) => {
              const e = err as Error & { code?: string; details?: Record<string, unknown> }
              worker.postMessage({
                type: 'appended',
                id: m.id,
                error: {
                  message: e.message,
                  ...(typeof e.code === 'string' ? { code: e.code } : {}),
                  ...(e.details ? { details: e.details } : {}),
                },
              } satisfies ProjectorRequest)
            },
          )
        default: {
          const unknown: never = m
          log.warn({ message: unknown }, 'unknown message from the projector thread')
        }
      }
    })
    worker.on('error', (err) => {
      log.error({ err }, 'the projector thread failed')
      reject(err)
    })
    worker.once('exit', (code) => {
      resolveStopped()
      const err = new KennelError('KENNEL_ERR_UNAVAILABLE', `the projector thread exited (code ${code})`)
      for (const call of calls.values()) call.reject(err)
      calls.clear()
      rejectCaughtUp(err)
      reject(err)
      if (!stopping)
        log.error(
          { code },
          'the projector thread exited: read models, audit heads and alerts stand still until kennel restarts',
        )
    })
  })
  const call = (
    request: { type: 'waitFor'; position: number; timeoutMs?: number } | { type: 'lag' },
  ): Promise<Extract<ProjectorReply, { type: 'reply' }>> =>
    new Promise((resolve, reject) => {
      const id = seq++
      calls.set(id, { resolve, reject })
      worker.postMessage({ ...request, id } as ProjectorRequest)
    })
  const stop = async (): Promise<void> => {
    if (stopping) return stopped
    stopping = true
    worker.postMessage({ type: 'stop' } satisfies ProjectorRequest)
    const deadline = setTimeout(() => void worker.terminate(), STOP_DEADLINE_MS)
    await stopped
    clearTimeout(deadline)
    await worker.terminate()
  }
  try {
    await ready
  } catch (err) {
    await stop()
    throw err
  }
  return {
    caughtUp,
    async waitFor(position, timeoutMs) {
      const reply = await call({ type: 'waitFor', position, ...(timeoutMs !== undefined ? { timeoutMs } : {}) })
      if (!reply.ok) throw new Error(reply.message)
    },
    async lag() {
      const reply = await call({ type: 'lag' })
      if (!reply.ok || !reply.lag) throw new Error(reply.message)
      lastLag = reply.lag
      return lastLag
    },
    get lastLag() {
      return lastLag
    },
    threadId: worker.threadId,
    stop,
  }
}

/** a line the thread logged, written by this thread's logger at its level */
function relay(log: Logger, line: string): void {
  let entry: Record<string, unknown>
  try {
    entry = JSON.parse(line) as Record<string, unknown>
  } catch {
    log.warn({ line }, 'unreadable log line from the projector thread')
    return
  }
  const { level, time: _time, pid: _pid, hostname: _hostname, name: _name, msg, ...fields } = entry
  const label = log.levels.labels[Number(level)] as 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | undefined
  log[label ?? 'info']({ ...fields, thread: 'projector' }, typeof msg === 'string' ? msg : '')
}

// One active projector per cluster on PostgreSQL (infra/lease/postgres.ts): every projector node
// holds a Projector of this kind; it starts the real one while it holds the lease and stops it
// when it loses the lease, and stands by otherwise.

export function leasedProjector(
  start: () => Promise<Projector>,
  lease: (o: { onAcquired(): Promise<void>; onLost(): Promise<void> }) => {
    readonly held: boolean
    stop(): Promise<void>
  },
): Projector & { readonly active: boolean } {
  let current: Projector | undefined
  let resolveCaughtUp!: () => void
  const caughtUp = new Promise<void>((resolve) => (resolveCaughtUp = resolve))
  const held = lease({
    async onAcquired() {
      current = await start()
      void current.caughtUp.then(resolveCaughtUp, () => undefined)
    },
    async onLost() {
      const stopping = current
      current = undefined
      await stopping?.stop()
    },
  })
  const standby = (): KennelError =>
    new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      "this node's projector is standing by: another node holds the projector lease",
    )
  return {
    caughtUp,
    get active() {
      return current !== undefined
    },
    async waitFor(position, timeoutMs) {
      if (!current) throw standby()
      await current.waitFor(position, timeoutMs)
    },
    async lag() {
      return current ? current.lag() : { events: 0, seconds: 0 }
    },
    get lastLag() {
      return current?.lastLag ?? { events: 0, seconds: 0 }
    },
    get threadId() {
      return current?.threadId ?? threadId
    },
    stop: () => held.stop(),
  }
}
