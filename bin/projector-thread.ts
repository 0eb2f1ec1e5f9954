import { parentPort, workerData } from 'node:worker_threads'
import type { Config } from '../infra/config.ts'
import { type ErrorCode, KennelError } from '../infra/errors.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { AppendOptions, AppendResult, NewEvent } from '../infra/eventstore/port.ts'
import { createLogger } from '../infra/log.ts'
import { openKennelReadModels } from '../projections/catalogue.ts'
import { startProjector, type ProjectorReply, type ProjectorRequest, type ProjectorWorkerData } from './projector.ts'

// The projector role on a thread of its own (bin/projector.ts startProjectorThread): its own
// event store handle and read-model connection, so that applying events, the read-model
// transactions, hashing the audit log and posting alerts never hold up the thread that serves
// toys. Log lines go to the parent, which writes them with its own logger.

if (!parentPort) throw new Error('projector-thread.ts runs as a worker thread (bin/projector-worker.js)')
const port = parentPort
const { config, logLevel } = workerData as ProjectorWorkerData
const post = (reply: ProjectorReply): void => port.postMessage(reply)
const log = createLogger(logLevel, 'kennel', { write: (line: string) => post({ type: 'log', line }) })

// appends go to the main thread's store (bin/projector.ts): one writer thread per process
const appending = new Map<number, { resolve: (r: AppendResult) => void; reject: (err: Error) => void }>()
let appendSeq = 0
const appendVia = (stream: string, events: readonly NewEvent[], options: AppendOptions): Promise<AppendResult> =>
  new Promise((resolve, reject) => {
    const id = appendSeq++
    appending.set(id, { resolve, reject })
    post({ type: 'append', id, stream, events: [...events], options })
  })

// listened to before the store opens: the catch-up may append and wait for the outcome
port.on('message', (m: ProjectorRequest) => {
  if (m.type !== 'appended') return
  const call = appending.get(m.id)
  appending.delete(m.id)
  if ('result' in m) call?.resolve(m.result)
  else
    call?.reject(
      m.error.code !== undefined
        ? new KennelError(m.error.code as ErrorCode, m.error.message, m.error.details)
        : new Error(m.error.message),
    )
})

try {
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env, appendVia })
  const readModels = await openKennelReadModels(config as Config).catch(async (err: unknown) => {
    await store.close()
    throw err
  })
  const projector = await startProjector(config as Config, store, readModels, log)
  void projector.caughtUp.then(
    () => post({ type: 'caughtUp' }),
    (err: unknown) => post({ type: 'failed', message: (err as Error).message }),
  )
  port.on('message', (m: ProjectorRequest) => {
    switch (m.type) {
      case 'waitFor':
        projector.waitFor(m.position, m.timeoutMs).then(
          () => post({ type: 'reply', id: m.id, ok: true }),
          (err: unknown) => post({ type: 'reply', id: m.id, ok: false, message: (err as Error).message }),
        )
        return
      case 'lag':
        projector.lag().then(
          (lag) => post({ type: 'reply', id: m.id, ok: true, lag }),
          (err: unknown) => post({ type: 'reply', id: m.id, ok: false, message: (err as Error).message }),
        )
        return
      case 'appended':
        return
      case 'stop':
        void (async () => {
          await projector.stop().catch((err: unknown) => log.warn({ err }, 'projector did not stop cleanly'))
          await readModels.close().catch(() => undefined)
          await store.close().catch(() => undefined)
          post({ type: 'stopped' })
          port.close()
        })()
        return
      default: {
        const unknown: never = m
        throw new Error(`unknown projector request ${JSON.stringify(unknown)}`)
      }
    }
  })
  post({ type: 'ready' })
} catch (err) {
  const e = err as Error & { code?: string }
  post({ type: 'failed', message: e.message, ...(e.code !== undefined ? { code: e.code } : {}) })
  port.close()
}
