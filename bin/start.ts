import { Gauge, Registry } from 'prom-client'
import { publicUrlOf, type Config, configKeys } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'
import { instrumentEventStore } from '../infra/eventstore/instrumented.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { createBroker, type Broker } from '../broker/broker.ts'
import { reloadListenerTls } from '../broker/listener.ts'
import { type DeviceCa, loadDeviceCa } from '../devices/ca.ts'
import { followDeviceCa, FollowedDeviceCa } from '../devices/ca-follower.ts'
import { checkCertificate, devicesProjection } from '../devices/registry.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { followProjections } from '../projections/follow.ts'
import { auditSigner, auditVerifiers, createAuditPort, openKennelReadModels } from '../projections/catalogue.ts'
import { accountContacts } from './breach-contacts.ts'
import { reportOpenFileLimit } from './open-files.ts'
import { persistentProjections } from './read-models.ts'
import { startAlertDelivery } from '../projections/monitor/delivery.ts'
import type { ReadModelStore } from '../projections/readmodels/port.ts'
import { type ProjectionRunner, startProjectionRunner } from '../projections/runner.ts'
import { buildApi } from '../api/app.ts'
import type { NotifyDevice } from '../api/context.ts'
import { listenApi, type ListeningApi } from '../api/listen.ts'
import { ApiMetrics } from '../api/metrics.ts'
import { loadMasterKey } from '../infra/blobstore/keys.ts'
import { S3BlobStore } from '../infra/blobstore/s3.ts'
import { openMailer } from '../infra/mail/open.ts'
import { openBlobStore } from '../infra/blobstore/open.ts'
import { startRecordingRetention } from '../api/recordings/retention.ts'
import { startTelemetryRetention } from '../projections/audit/telemetry-retention.ts'
import { processMetrics } from '../infra/ops/process-metrics.ts'
import type { Readiness } from '../infra/ops/readiness.ts'
import { listenOps } from '../infra/ops/server.ts'
import { kennelReadiness } from './readiness.ts'
import { prepareDataDir } from './data-dir.ts'
import { openConfiguredEventStore } from './event-store.ts'
import { kennelVersion } from './version.ts'

// The composition root: the only place that wires broker/, api/, projections/ and devices/
// together and listens (STYLE §1). Tests call startKennel with port 0 and a temporary data dir.

export interface RunningKennel {
  config: Config
  store: EventStore
  ca: DeviceCa
  broker: Broker
  projections: ProjectionRunner
  /** what /readyz reports */
  readiness: Readiness
  ports: { mqtt: number; api: number; metrics: number }
  stop(): Promise<void>
}

type Stops = Array<() => Promise<void>>

export async function startKennel(config: Config, log: Logger): Promise<RunningKennel> {
  const stops: Stops = []
  const stop = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s()
  }
  reportOpenFileLimit(log)
  try {
    prepareDataDir(config)
    const registry = new Registry()
    const store = instrumentEventStore(await openConfiguredEventStore(config), registry)
    stops.push(() => store.close())
    log.info({ eventStore: store.kind, environment: store.environment, dataDir: config.dataDir }, 'event store open')
    const caFrom = await store.headPosition()
    const ca = new FollowedDeviceCa(await loadDeviceCa(config))
    const tls = await loadServerTls(config, ca)
    const readModels = await openKennelReadModels(config)
    stops.push(() => readModels.close())
    const readiness = kennelReadiness({ config, store, readModels })
    const mqttListener = readiness.listener('mqtt')
    const projections = await startProjections(config, store, readModels, registry, log, stops)
    const broker = await startBroker(config, store, ca, tls, registry, log, stops)
    const mqtt = await bound(configKeys.mqttPort.env, config.host, config.mqttPort, () => broker.listen(config.mqttPort, config.host))
    mqttListener.up()
    log.info({ host: config.host, port: mqtt }, 'MQTT broker listening (mutual TLS)')
    const notifyDevice: NotifyDevice = (deviceId, subtopic, payload) => broker.publishToDevice(deviceId, subtopic, JSON.stringify(payload), { qos: 1 })
    const audit = createAuditPort({ store, readModels, verifiers: auditVerifiers(config), headEveryEvents: config.auditHeadEveryEvents, contacts: accountContacts({ config, store }) })
    const { api, metrics } = await startApi(config, store, ca, tls, notifyDevice, audit, registry, readiness, log, stops)
    log.info({ host: config.host, port: api.port, metricsPort: metrics }, 'HTTPS API listening')
    await followCaRollovers(config, store, caFrom, ca, broker, api, log, stops)
    // pushed last, so it runs first: not ready before anything closes
    stops.push(async () => readiness.drain())
    return { config, store, ca, broker, projections, readiness, ports: { mqtt, api: api.port, metrics }, stop }
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
  // R12: recordings older than KENNEL_RETENTION_RECORDINGS_DAYS are deleted (api/recordings/retention.ts)
  const retention = startRecordingRetention({ store, blobs: openBlobStore(config, loadMasterKey(config)), retentionDays: config.retentionRecordingsDays, log: log.child({ component: 'retention' }) })
  stops.push(() => retention.stop())
  // R12: the audit log's index of per-message metadata is kept KENNEL_RETENTION_TELEMETRY_DAYS
  const telemetry = startTelemetryRetention({ readModels, retentionDays: config.retentionTelemetryDays, log: log.child({ component: 'retention' }) })
  stops.push(() => telemetry.stop())
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

// The REST API (api/) on HTTPS and the operations listener (/metrics, /healthz, /readyz) on
// KENNEL_METRICS_HOST; toys are told through the broker.
async function startApi(
  config: Config,
  store: EventStore,
  ca: DeviceCa,
  tls: { cert: string; key: string },
  notifyDevice: NotifyDevice,
  audit: ReturnType<typeof createAuditPort>,
  registry: Registry,
  readiness: Readiness,
  log: Logger,
  stops: Stops,
): Promise<{ api: ListeningApi; metrics: number }> {
  const apiListener = readiness.listener('api')
  const opsListener = readiness.listener('metrics')
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
  // KENNEL_PUBLIC_URL, else the listener's address with the port it is bound to (KENNEL_API_PORT=0
  // picks one): known once it listens, before the first request is read
  let boundPort = config.apiPort
  const publicUrl = () => publicUrlOf(config, boundPort)
  const app = await buildApi({ config, store, masterKey: loadMasterKey(config), ca, notifyDevice, mailer, metrics, audit, publicUrl, readiness: () => readiness.report(), logger: log.child({ component: 'api' }), ...(blobs ? { blobs } : {}), ...(redis ? { redis } : {}) })
  const api = await bound(configKeys.apiPort.env, config.host, config.apiPort, () => listenApi(app, { config, tls, trustedCaPem: ca.trustedPem, store, metrics, log }))
  boundPort = api.port
  stops.push(() => api.close())
  apiListener.up()
  const registries = [processMetrics({ version: kennelVersion() }), metrics.registry, registry]
  const metricsServer = await bound(configKeys.metricsPort.env, config.metricsHost, config.metricsPort, () => listenOps({ host: config.metricsHost, port: config.metricsPort, registries, readiness }), configKeys.metricsHost.env)
  stops.push(() => metricsServer.close())
  opsListener.up()
  return { api, metrics: metricsServer.port }
}

// A device-CA rollover made by the CLI in another process reaches both listeners without a
// restart (R18): toys enrolled under the new CA are trusted, renewals are issued by it, and live
// sessions keep the chain they were verified with.
async function followCaRollovers(config: Config, store: EventStore, after: number, ca: FollowedDeviceCa, broker: Broker, api: ListeningApi, log: Logger, stops: Stops): Promise<void> {
  const follower = followDeviceCa({
    store,
    after,
    ca,
    load: () => loadDeviceCa(config),
    async onChange(next) {
      const tls = await loadServerTls(config, next)
      reloadListenerTls(broker.server, config, { ca: next.trustedPem, ...tls })
      api.reloadTls(tls, next.trustedPem)
    },
    log: log.child({ component: 'ca' }),
  })
  stops.push(() => follower.stop())
  await follower.ready
}

/** A listener that cannot bind is a setting to change, not an internal error: the message names
 * the variable and the address. */
async function bound<T>(variable: string, host: string, port: number, listen: () => Promise<T>, hostVariable: string = configKeys.host.env): Promise<T> {
  try {
    return await listen()
  } catch (err) {
    const address = `${host.includes(':') ? `[${host}]` : host}:${port}`
    const reasons: Record<string, string> = {
      EADDRINUSE: `${address} is already in use: stop what listens there or set ${variable} to a free port (0 = any free port)`,
      EACCES: `not allowed to listen on ${address}: ports below 1024 need privileges; set ${variable} to a port from 1024 up`,
      EADDRNOTAVAIL: `${host} is not an address of this machine: set ${hostVariable} to one of its addresses (for ${variable})`,
      ENOTFOUND: `${host} does not resolve to an address: set ${hostVariable} to one of this machine's addresses (for ${variable})`,
    }
    const reason = reasons[(err as NodeJS.ErrnoException).code ?? '']
    if (reason === undefined) throw err
    throw new KennelError('KENNEL_ERR_CANNOT_LISTEN', `cannot listen for ${variable}: ${reason}`, { variable, host, port }, { cause: err })
  }
}
