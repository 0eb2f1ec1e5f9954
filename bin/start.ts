import { Gauge, Registry } from 'prom-client'
import type { Config } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { createBroker, type Broker } from '../broker/broker.ts'
import { type DeviceCa, loadDeviceCa } from '../devices/ca.ts'
import { checkCertificate, devicesProjection } from '../devices/registry.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { followProjections } from '../projections/follow.ts'
import { auditSigner, auditVerifiers, createAuditPort, openKennelReadModels } from '../projections/catalogue.ts'
import { persistentProjections } from './read-models.ts'
import { startAlertDelivery } from '../projections/monitor/delivery.ts'
import type { ReadModelStore } from '../projections/readmodels/port.ts'
import { type ProjectionRunner, startProjectionRunner } from '../projections/runner.ts'
import { buildApi } from '../api/app.ts'
import type { NotifyDevice } from '../api/context.ts'
import { listenApi, listenMetrics } from '../api/listen.ts'
import { ApiMetrics } from '../api/metrics.ts'
import { loadMasterKey } from '../infra/blobstore/keys.ts'
import { S3BlobStore } from '../infra/blobstore/s3.ts'
import { openMailer } from '../infra/mail/open.ts'

// The composition root: the only place that wires broker/, api/, projections/ and devices/
// together and listens (STYLE §1). Tests call startKennel with port 0 and a temporary data dir.

export interface RunningKennel {
  config: Config
  store: EventStore
  ca: DeviceCa
  broker: Broker
  projections: ProjectionRunner
  ports: { mqtt: number; api: number; metrics: number }
  stop(): Promise<void>
}

type Stops = Array<() => Promise<void>>

export async function startKennel(config: Config, log: Logger): Promise<RunningKennel> {
  const stops: Stops = []
  const stop = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s()
  }
  try {
    const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
    stops.push(() => store.close())
    log.info({ eventStore: store.kind, environment: store.environment, dataDir: config.dataDir }, 'event store open')
    const ca = await loadDeviceCa(config)
    const tls = await loadServerTls(config, ca)
    const registry = new Registry()
    const readModels = await openKennelReadModels(config)
    stops.push(() => readModels.close())
    const projections = await startProjections(config, store, readModels, registry, log, stops)
    const broker = await startBroker(config, store, ca, tls, registry, log, stops)
    const mqtt = await broker.listen(config.mqttPort, config.host)
    log.info({ host: config.host, port: mqtt }, 'MQTT broker listening (mutual TLS)')
    const notifyDevice: NotifyDevice = (deviceId, subtopic, payload) => broker.publishToDevice(deviceId, subtopic, JSON.stringify(payload), { qos: 1 })
    const audit = createAuditPort({ store, readModels, verifiers: auditVerifiers(config), headEveryEvents: config.auditHeadEveryEvents })
    const { api, metrics } = await startApi(config, store, ca, tls, notifyDevice, audit, registry, log, stops)
    log.info({ host: config.host, port: api, metricsPort: metrics }, 'HTTPS API listening')
    return { config, store, ca, broker, projections, ports: { mqtt, api, metrics }, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

// Read models with their checkpoints in the read-model store, the tamper-evident audit log and
// the security monitor (R11, R17); alerts go to the log and the webhook.
async function startProjections(config: Config, store: EventStore, readModels: ReadModelStore, registry: Registry, log: Logger, stops: Stops): Promise<ProjectionRunner> {
  const runner = await startProjectionRunner({ store, readModels, projections: persistentProjections(config, auditSigner(config)), log: log.child({ component: 'projections' }) })
  stops.push(() => runner.stop())
  const alerts = await startAlertDelivery({ store, readModels, log: log.child({ component: 'alerts' }), webhook: config.alertWebhook })
  stops.push(() => alerts.stop())
  new Gauge({ name: 'kennel_projection_lag_events', help: 'events in the store not yet applied to the read models', registers: [registry], async collect() { this.set((await runner.lag()).events) } })
  new Gauge({ name: 'kennel_projection_lag_seconds', help: 'age of the newest applied event while the read models are behind', registers: [registry], collect() { this.set(runner.lastLag.seconds) } })
  return runner
}

// The MQTT broker (broker/): certificates checked against the devices read model, revocations
// followed from the store (R2, R3).
async function startBroker(config: Config, store: EventStore, ca: DeviceCa, tls: { cert: string; key: string }, registry: Registry, log: Logger, stops: Stops): Promise<Broker> {
  const devices = followProjections(store, [devicesProjection], log.child({ component: 'broker-devices' }))
  stops.push(() => devices.stop())
  await devices.caughtUp
  const broker = await createBroker({
    config,
    store,
    tls: { ca: ca.trustedPem, ...tls },
    checkCertificate: (deviceId, serial, now) => checkCertificate(devices.docs, deviceId, serial, now),
    registry,
    log: log.child({ component: 'broker' }),
  })
  stops.push(() => broker.close())
  return broker
}

// The REST API (api/) on HTTPS and /metrics on loopback; toys are told through the broker.
async function startApi(
  config: Config,
  store: EventStore,
  ca: DeviceCa,
  tls: { cert: string; key: string },
  notifyDevice: NotifyDevice,
  audit: ReturnType<typeof createAuditPort>,
  registry: Registry,
  log: Logger,
  stops: Stops,
): Promise<{ api: number; metrics: number }> {
  const metrics = new ApiMetrics()
  let redis: import('ioredis').Redis | undefined
  if (config.redisUrl !== undefined) {
    const { Redis } = await import('ioredis')
    const client = new Redis(config.redisUrl, { enableOfflineQueue: false, lazyConnect: false })
    redis = client
    stops.push(async () => void client.disconnect())
  }
  const blobs = config.s3Bucket !== undefined ? new S3BlobStore({ bucket: config.s3Bucket, region: config.s3Region, endpoint: config.s3Endpoint, kmsKeyId: config.s3KmsKeyId }) : undefined
  if (blobs) stops.push(() => blobs.close())
  // sign-up confirmations: SMTP over TLS, or the .eml outbox in the data dir (development)
  const mailer = openMailer(config)
  stops.push(() => mailer.close())
  log.info({ mailer: mailer.kind }, 'mailer ready')
  const app = await buildApi({ config, store, masterKey: loadMasterKey(config), ca, notifyDevice, mailer, metrics, audit, logger: log.child({ component: 'api' }), ...(blobs ? { blobs } : {}), ...(redis ? { redis } : {}) })
  const api = await listenApi(app, { config, tls, trustedCaPem: ca.trustedPem, store, metrics, log })
  stops.push(() => api.close())
  const metricsServer = await listenMetrics(config.metricsPort, [metrics.registry, registry])
  stops.push(() => metricsServer.close())
  return { api: api.port, metrics: metricsServer.port }
}
