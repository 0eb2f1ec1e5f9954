import { parentPort, workerData } from 'node:worker_threads'
import type { Config } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
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

try {
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
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
