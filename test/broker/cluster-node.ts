import { createBroker } from '../../broker/broker.ts'
import { loadDeviceCa } from '../../devices/ca.ts'
import { checkCertificate, devicesProjection } from '../../devices/registry.ts'
import { loadServerTls } from '../../devices/server-tls.ts'
import { loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { createLogger } from '../../infra/log.ts'
import { followProjections } from '../../projections/follow.ts'

// One broker process of the cluster test (cluster.test.ts): configured from KENNEL_* variables
// like `kennel start`, the Redis key prefix from KENNEL_TEST_KEY_PREFIX. It prints
// {"port":N} on stdout once listening and then answers the test over IPC:
// { op: 'waitFor' | 'publishToDevice' | 'kick' | 'nextMessage' | 'close', ... } → { ok } or { error }.

const config = loadConfig(process.env)
const log = createLogger('silent')
const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
const devices = followProjections(store, [devicesProjection])
await devices.caughtUp
const ca = await loadDeviceCa(config)
const broker = await createBroker({
  config,
  store,
  tls: { ca: ca.trustedPem, ...(await loadServerTls(config, ca)) },
  checkCertificate: (id, serial, now) => checkCertificate(devices.docs, id, serial, now),
  log,
  clusterKeyPrefix: process.env.KENNEL_TEST_KEY_PREFIX,
})
const port = await broker.listen(0, '127.0.0.1')

type Request = {
  seq: number
  op: string
  deviceId: string
  subtopic?: string
  payload?: string
  topic?: string
  position?: number
}
const handlers: Record<string, (r: Request) => Promise<unknown>> = {
  // this node's device registry has seen the store up to `position` (an enrolment by the test)
  waitFor: (r) => devices.waitFor(r.position!),
  publishToDevice: (r) => broker.publishToDevice(r.deviceId, r.subtopic!, r.payload!),
  kick: (r) => broker.kick(r.deviceId, 'revoked'),
  // the backend's view: the next message on a topic, as seen by this node
  nextMessage: (r) =>
    new Promise((resolve) => {
      const on = (packet: { payload: Buffer | string }, cb: () => void): void => {
        cb()
        broker.aedes.unsubscribe(r.topic!, on as never, () => resolve(packet.payload.toString()))
      }
      broker.aedes.subscribe(r.topic!, on as never, () => process.send!({ seq: r.seq, subscribed: true }))
    }),
  async close() {
    await broker.close()
    await devices.stop()
    await store.close()
  },
}
process.on('message', (r: Request) => {
  handlers[r.op]!(r).then(
    (value) => process.send!({ seq: r.seq, ok: true, value }, () => r.op === 'close' && process.exit(0)),
    (err: Error) => process.send!({ seq: r.seq, error: err.message }),
  )
})
process.stdout.write(`${JSON.stringify({ port })}\n`)
