import type { Config } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { createBroker, type Broker } from '../broker/broker.ts'
import { loadDeviceCa } from '../devices/ca.ts'
import { checkCertificate, devicesProjection } from '../devices/registry.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { followProjections } from '../projections/follow.ts'
import { buildApi } from '../api/app.ts'
import type { NotifyDevice } from '../api/context.ts'
import { listenApi, listenMetrics } from '../api/listen.ts'
import { ApiMetrics } from '../api/metrics.ts'
import { loadMasterKey } from '../infra/blobstore/keys.ts'
import { S3BlobStore } from '../infra/blobstore/s3.ts'

// The composition root: the only place that wires broker/, api/, projections/ and devices/
// together and listens (STYLE §1). Tests call startKennel with port 0 and a temporary data dir.

export interface RunningKennel {
  config: Config
  store: EventStore
  ports: { mqtt?: number; api?: number; metrics?: number }
  stop(): Promise<void>
}

export async function startKennel(config: Config, log: Logger): Promise<RunningKennel> {
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  log.info({ eventStore: store.kind, environment: store.environment, dataDir: config.dataDir }, 'event store open')
  const stops: Array<() => Promise<void>> = [() => store.close()]
  const ports: RunningKennel['ports'] = {}
  const broker = await startBroker(config, store, log, stops)
  ports.mqtt = await broker.listen(config.mqttPort, config.host)
  log.info({ host: config.host, port: ports.mqtt }, 'MQTT broker listening (mutual TLS)')
  Object.assign(ports, await startApi(config, store, log, stops, (deviceId, subtopic, payload) => broker.publishToDevice(deviceId, subtopic, JSON.stringify(payload), { qos: 1 })))
  log.info({ host: config.host, port: ports.api, metricsPort: ports.metrics }, 'HTTPS API listening')
  return {
    config,
    store,
    ports,
    async stop() {
      for (const stop of stops.reverse()) await stop()
    },
  }
}

// The MQTT broker (broker/): device CA and server certificate from devices/, certificates
// checked against the devices read model, revocations followed from the store (R2, R3).
async function startBroker(config: Config, store: EventStore, log: Logger, stops: Array<() => Promise<void>>): Promise<Broker> {
  const ca = await loadDeviceCa(config)
  const serverTls = await loadServerTls(config, ca)
  const devices = followProjections(store, [devicesProjection])
  stops.push(() => devices.stop())
  await devices.caughtUp
  const broker = await createBroker({
    config,
    store,
    tls: { ca: ca.trustedPem, ...serverTls },
    checkCertificate: (deviceId, serial, now) => checkCertificate(devices.docs, deviceId, serial, now),
    log: log.child({ component: 'broker' }),
  })
  stops.push(() => broker.close())
  return broker
}

// The REST API (api/) on HTTPS and /metrics on loopback; toys are told through the broker.
// Audit verification and breach reports are not wired yet: those routes answer 503.
async function startApi(config: Config, store: EventStore, log: Logger, stops: Array<() => Promise<void>>, notifyDevice: NotifyDevice): Promise<{ api: number; metrics: number }> {
  const ca = await loadDeviceCa(config)
  const tls = await loadServerTls(config, ca)
  const metrics = new ApiMetrics()
  let redis: import('ioredis').Redis | undefined
  if (config.redisUrl !== undefined) {
    const { Redis } = await import('ioredis')
    const client = new Redis(config.redisUrl, { enableOfflineQueue: false, lazyConnect: false })
    redis = client
    stops.push(async () => void client.disconnect())
  }
  const blobs = config.s3Bucket !== undefined ? new S3BlobStore({ bucket: config.s3Bucket, region: config.s3Region, endpoint: config.s3Endpoint, kmsKeyId: config.s3KmsKeyId }) : undefined
  const app = await buildApi({ config, store, masterKey: loadMasterKey(config), ca, notifyDevice, metrics, logger: log.child({ component: 'api' }), ...(blobs ? { blobs } : {}), ...(redis ? { redis } : {}) })
  const api = await listenApi(app, { config, tls, trustedCaPem: ca.trustedPem, store, metrics, log })
  stops.push(() => api.close())
  if (blobs) stops.push(() => blobs.close())
  const metricsServer = await listenMetrics(config.metricsPort, [metrics.registry])
  stops.push(() => metricsServer.close())
  return { api: api.port, metrics: metricsServer.port }
}
