import path from 'node:path'
import { Gauge, Registry } from 'prom-client'
import { publicUrlOf, type Config, configKeys, type Role } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'
import { instrumentEventStore } from '../infra/eventstore/instrumented.ts'
import { lockEmbeddedStore } from '../infra/eventstore/node-lock.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { createBroker, type Broker } from '../broker/broker.ts'
import { closeOrphanedConnections } from '../broker/orphaned.ts'
import { reloadListenerTls } from '../broker/listener.ts'
import { type DeviceCa, loadDeviceCa } from '../devices/ca.ts'
import { followDeviceCa, FollowedDeviceCa } from '../devices/ca-follower.ts'
import { checkCertificate, devicesProjection, deviceView } from '../devices/registry.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { followProjections } from '../projections/follow.ts'
import { auditVerifiers, createAuditPort, openKennelReadModels } from '../projections/catalogue.ts'
import { accountContacts } from './breach-contacts.ts'
import { reportOpenFileLimit } from './open-files.ts'
import { leasedProjector, type Projector, startProjector, startProjectorThread } from './projector.ts'
import { buildApi } from '../api/app.ts'
import type { AuditPort } from '../api/audit/routes.ts'
import type { NotifyDevice } from '../api/context.ts'
import { listenApi, type ListeningApi } from '../api/listen.ts'
import { ApiMetrics } from '../api/metrics.ts'
import { KeyRing, loadMasterKey } from '../infra/blobstore/keys.ts'
import { openKeyStore } from '../infra/keystore/open.ts'
import { HouseholdSources } from '../infra/keystore/sealed-source.ts'
import { S3BlobStore } from '../infra/blobstore/s3.ts'
import { openMailer } from '../infra/mail/open.ts'
import { processMetrics } from '../infra/ops/process-metrics.ts'
import type { Readiness } from '../infra/ops/readiness.ts'
import { listenOps } from '../infra/ops/server.ts'
import { kennelReadiness } from './readiness.ts'
import { prepareDataDir } from './data-dir.ts'
import { openConfiguredEventStore } from './event-store.ts'
import { kennelVersion } from './version.ts'

// The composition root: the only place that wires broker/, api/, projections/ and devices/
// together and listens. Tests call startKennel with port 0 and a temporary data dir.
// KENNEL_ROLES chooses the parts: `broker` and `api` append events and keep in memory only the
// views they decide with; `projector` keeps the persistent read models and delivers alerts.

export interface RunningKennel {
  config: Config
  store: EventStore
  /** the device CA, on broker and API nodes */
  ca: DeviceCa | undefined
  broker: Broker | undefined
  projections: Projector | undefined
  /** what /readyz reports */
  readiness: Readiness
  /** the listeners of this node's roles; the operations listener (/metrics, /healthz, /readyz) always */
  ports: { mqtt?: number; api?: number; metrics: number }
  stop(): Promise<void>
}

type Stops = Array<() => Promise<void>>

export async function startKennel(config: Config, log: Logger): Promise<RunningKennel> {
  const stops: Stops = []
  const stop = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s()
  }
  const roles = new Set<Role>(config.roles)
  reportOpenFileLimit(log)
  try {
    prepareDataDir(config)
    if (config.eventStoreUrl.startsWith('sqlite:')) {
      const lock = lockEmbeddedStore(path.resolve(config.eventStoreUrl.slice('sqlite:'.length)))
      stops.push(async () => lock.release())
    }
    const registry = new Registry()
    const store = instrumentEventStore(await openConfiguredEventStore(config), registry)
    stops.push(() => store.close())
    log.info(
      { eventStore: store.kind, environment: store.environment, dataDir: config.dataDir, roles: config.roles },
      'event store open',
    )
    if (store.kind === 'sqlite') {
      // this node holds the embedded store: a connection open on record is one a killed process left
      const closed = await closeOrphanedConnections(store)
      if (closed > 0)
        log.warn(
          { connections: closed },
          'connections left open by a broker that did not stop cleanly are recorded as ended (DeviceDisconnected, reason broker-crashed)',
        )
    }
    // the read models an API or projector node reads (readiness: the projector's checkpoints; the
    // API's audit answers); the projector writes them through its own connection
    const readModels = roles.has('api') || roles.has('projector') ? await openKennelReadModels(config) : undefined
    if (readModels) stops.push(() => readModels.close())
    const readiness = kennelReadiness({ config, store, readModels })
    const projections = roles.has('projector') ? await startProjections(config, store, registry, log, stops) : undefined
    const registries = [processMetrics({ version: kennelVersion() }), registry]
    if (!roles.has('broker') && !roles.has('api')) {
      const metrics = await listenOpsOn(config, registries, readiness, stops)
      // pushed last, so it runs first: not ready before anything closes
      stops.push(async () => readiness.drain())
      return { config, store, ca: undefined, broker: undefined, projections, readiness, ports: { metrics }, stop }
    }
    const caFrom = await store.headPosition()
    const ca = new FollowedDeviceCa(await loadDeviceCa(config))
    const tls = await loadServerTls(config, ca)
    let broker: Broker | undefined
    let mqtt: number | undefined
    if (roles.has('broker')) {
      const mqttListener = readiness.listener('mqtt')
      const b = await startBroker(config, store, ca, tls, registry, log, stops)
      broker = b
      mqtt = await bound(configKeys.mqttPort.env, config.host, config.mqttPort, () =>
        b.listen(config.mqttPort, config.host),
      )
      mqttListener.up()
      log.info({ host: config.host, port: mqtt }, 'MQTT broker listening (mutual TLS)')
    }
    let api: ListeningApi | undefined
    if (roles.has('api')) {
      const notifyDevice = await inboxOf(config, store, broker, log, stops)
      const audit = afterProjection(
        createAuditPort({
          store,
          readModels: readModels!,
          verifiers: auditVerifiers(config),
          headEveryEvents: config.auditHeadEveryEvents,
          contacts: accountContacts({ config, store }),
        }),
        store,
        projections,
      )
      const started = await startApi(config, store, ca, tls, notifyDevice, audit, readiness, log, stops)
      api = started.api
      registries.push(started.metrics.registry)
      log.info({ host: config.host, port: api.port }, 'HTTPS API listening')
    }
    const metrics = await listenOpsOn(config, registries, readiness, stops)
    await followCaRollovers(config, store, caFrom, ca, broker, api, log, stops)
    // pushed last, so it runs first: not ready before anything closes
    stops.push(async () => readiness.drain())
    return { config, store, ca, broker, projections, readiness, ports: { mqtt, api: api?.port, metrics }, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

// The projector role (bin/projector.ts) with its lag on /metrics: on a thread of its own beside a
// broker or an API, so that it never holds up the thread serving toys; on this thread when it is
// all the node does.
async function startProjections(
  config: Config,
  store: EventStore,
  registry: Registry,
  log: Logger,
  stops: Stops,
): Promise<Projector> {
  const one = async (): Promise<Projector> => {
    if (config.roles.length > 1) return startProjectorThread(config, log, store)
    const readModels = await openKennelReadModels(config)
    const projector = await startProjector(config, store, readModels, log).catch(async (err: unknown) => {
      await readModels.close()
      throw err
    })
    return {
      caughtUp: projector.caughtUp,
      waitFor: (position, timeoutMs) => projector.waitFor(position, timeoutMs),
      lag: () => projector.lag(),
      get lastLag() {
        return projector.lastLag
      },
      threadId: projector.threadId,
      async stop() {
        await projector.stop()
        await readModels.close()
      },
    }
  }
  let projector: Projector
  if (isPostgres(config.eventStoreUrl)) {
    // one active projector per cluster: the others stand by (infra/lease/postgres.ts; loaded
    // here, so that a node on the embedded store never loads the PostgreSQL client)
    const { holdPostgresLease } = await import('../infra/lease/postgres.ts')
    const leased = leasedProjector(one, (handlers) =>
      holdPostgresLease({
        url: config.eventStoreUrl,
        name: 'projector',
        log: log.child({ component: 'lease' }),
        ...handlers,
      }),
    )
    new Gauge({
      name: 'kennel_projector_active',
      help: '1 while this node holds the projector lease and runs the projections, 0 while it stands by',
      registers: [registry],
      collect() {
        this.set(leased.active ? 1 : 0)
      },
    })
    projector = leased
  } else {
    projector = await one()
  }
  stops.push(() => projector.stop())
  new Gauge({
    name: 'kennel_projection_lag_events',
    help: 'events in the store not yet applied to the read models',
    registers: [registry],
    async collect() {
      this.set((await projector.lag()).events)
    },
  })
  new Gauge({
    name: 'kennel_projection_lag_seconds',
    help: 'age of the newest applied event while the read models are behind',
    registers: [registry],
    collect() {
      this.set(projector.lastLag.seconds)
    },
  })
  return projector
}

// The MQTT broker (broker/): certificates checked against the devices read model, revocations
// followed from the store (R2, R3).
async function startBroker(
  config: Config,
  store: EventStore,
  ca: DeviceCa,
  tls: { cert: string; key: string },
  registry: Registry,
  log: Logger,
  stops: Stops,
): Promise<Broker> {
  const devices = followProjections(store, [devicesProjection], log.child({ component: 'broker-devices' }))
  stops.push(() => devices.stop())
  await devices.caughtUp
  // a paired toy's address is its family's home address: sealed with the household's key (R12)
  const keys = await openKeyStore(config, log)
  stops.push(() => keys.close())
  const households = new HouseholdSources(new KeyRing(keys, loadMasterKey(config), 'household-data'))
  const broker = await createBroker({
    config,
    store,
    tls: { ca: ca.trustedPem, ...tls },
    checkCertificate: (deviceId, serial, now) => checkCertificate(devices.docs, deviceId, serial, now),
    toySource: {
      householdOf: (deviceId) => deviceView(devices.docs, deviceId)?.householdId,
      source: (householdId, ip) => households.source(householdId, ip),
    },
    registry,
    log: log.child({ component: 'broker' }),
  })
  stops.push(() => broker.close())
  return broker
}

/** the longest an auditor's request waits for this node's projector to apply what the store holds */
const AUDIT_WAIT_MS = 10_000

/** Audit verification and breach reports answer from the read models once this node's projector
 * has committed every event the store held when they were asked (read-your-writes across the
 * projector's thread); a projector further behind than AUDIT_WAIT_MS answers from what it has
 * committed, and a node without one from what the cluster's projector has. */
function afterProjection(port: AuditPort, store: EventStore, projector: Projector | undefined): AuditPort {
  if (!projector) return port
  const applied = async (): Promise<void> =>
    projector.waitFor(await store.headPosition(), AUDIT_WAIT_MS).catch(() => undefined)
  return {
    verify: async () => (await applied(), port.verify()),
    breachReport: async (request) => (await applied(), port.breachReport(request)),
    latestHead: async () => (await applied(), port.latestHead()),
  }
}

/** How the API tells a toy: through the broker of this node, else through every broker of the
 * cluster on the shared Redis (loadConfig refuses an API with neither). */
async function inboxOf(
  config: Config,
  store: EventStore,
  broker: Broker | undefined,
  log: Logger,
  stops: Stops,
): Promise<NotifyDevice> {
  if (broker)
    return (deviceId, subtopic, payload) =>
      broker.publishToDevice(deviceId, subtopic, JSON.stringify(payload), { qos: 1 })
  // loaded here: only a cluster's API node without a broker needs the Redis clients
  const { createInboxPublisher } = await import('../broker/inbox-publisher.ts')
  const publisher = await createInboxPublisher({ config, store, log: log.child({ component: 'inbox' }) })
  stops.push(() => publisher.close())
  return (deviceId, subtopic, payload) =>
    publisher.publishToDevice(deviceId, subtopic, JSON.stringify(payload), { qos: 1 })
}

// The REST API (api/) on HTTPS; toys are told through the broker (inboxOf).
async function startApi(
  config: Config,
  store: EventStore,
  ca: DeviceCa,
  tls: { cert: string; key: string },
  notifyDevice: NotifyDevice,
  audit: AuditPort,
  readiness: Readiness,
  log: Logger,
  stops: Stops,
): Promise<{ api: ListeningApi; metrics: ApiMetrics }> {
  const apiListener = readiness.listener('api')
  const metrics = new ApiMetrics()
  let redis: import('ioredis').Redis | undefined
  if (config.redisUrl !== undefined) {
    const { Redis } = await import('ioredis')
    const client = new Redis(config.redisUrl, { enableOfflineQueue: false, lazyConnect: false })
    redis = client
    stops.push(async () => void client.disconnect())
  }
  const blobs =
    config.s3Bucket !== undefined
      ? new S3BlobStore({
          bucket: config.s3Bucket,
          region: config.s3Region,
          endpoint: config.s3Endpoint,
          kmsKeyId: config.s3KmsKeyId,
        })
      : undefined
  if (blobs) stops.push(() => blobs.close())
  // sign-up confirmations: SMTP over TLS, or the .eml outbox in the data dir (development)
  const mailer = openMailer(config)
  stops.push(() => mailer.close())
  log.info({ mailer: mailer.kind }, 'mailer ready')
  // KENNEL_PUBLIC_URL, else the listener's address with the port it is bound to (KENNEL_API_PORT=0
  // picks one): known once it listens, before the first request is read
  let boundPort = config.apiPort
  const publicUrl = () => publicUrlOf(config, boundPort)
  const app = await buildApi({
    config,
    store,
    masterKey: loadMasterKey(config),
    ca,
    notifyDevice,
    mailer,
    metrics,
    audit,
    publicUrl,
    readiness: () => readiness.report(),
    logger: log.child({ component: 'api' }),
    ...(blobs ? { blobs } : {}),
    ...(redis ? { redis } : {}),
  })
  const api = await bound(configKeys.apiPort.env, config.host, config.apiPort, () =>
    listenApi(app, { config, tls, trustedCaPem: ca.trustedPem, store, metrics, log }),
  )
  boundPort = api.port
  stops.push(() => api.close())
  apiListener.up()
  return { api, metrics }
}

/** the operations listener (/metrics, /healthz, /readyz) on KENNEL_METRICS_HOST, on every node:
 * the figures of the roles it runs */
async function listenOpsOn(
  config: Config,
  registries: Registry[],
  readiness: Readiness,
  stops: Stops,
): Promise<number> {
  const opsListener = readiness.listener('metrics')
  const server = await bound(
    configKeys.metricsPort.env,
    config.metricsHost,
    config.metricsPort,
    () => listenOps({ host: config.metricsHost, port: config.metricsPort, registries, readiness }),
    configKeys.metricsHost.env,
  )
  stops.push(() => server.close())
  opsListener.up()
  return server.port
}

// A device-CA rollover made by the CLI in another process reaches both listeners without a
// restart (R18): toys enrolled under the new CA are trusted, renewals are issued by it, and live
// sessions keep the chain they were verified with.
async function followCaRollovers(
  config: Config,
  store: EventStore,
  after: number,
  ca: FollowedDeviceCa,
  broker: Broker | undefined,
  api: ListeningApi | undefined,
  log: Logger,
  stops: Stops,
): Promise<void> {
  const follower = followDeviceCa({
    store,
    after,
    ca,
    load: () => loadDeviceCa(config),
    async onChange(next) {
      const tls = await loadServerTls(config, next)
      if (broker) reloadListenerTls(broker.server, config, { ca: next.trustedPem, ...tls })
      api?.reloadTls(tls, next.trustedPem)
    },
    log: log.child({ component: 'ca' }),
  })
  stops.push(() => follower.stop())
  await follower.ready
}

/** A listener that cannot bind is a setting to change, not an internal error: the message names
 * the variable and the address. */
async function bound<T>(
  variable: string,
  host: string,
  port: number,
  listen: () => Promise<T>,
  hostVariable: string = configKeys.host.env,
): Promise<T> {
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
    throw new KennelError(
      'KENNEL_ERR_CANNOT_LISTEN',
      `cannot listen for ${variable}: ${reason}`,
      { variable, host, port },
      { cause: err },
    )
  }
}

const isPostgres = (url: string): boolean => url.startsWith('postgres://') || url.startsWith('postgresql://')

/** a node that runs every role (the default KENNEL_ROLES): each of its parts is there */
export interface FullKennel extends RunningKennel {
  ca: DeviceCa
  broker: Broker
  projections: Projector
  ports: { mqtt: number; api: number; metrics: number }
}

export function everyRole(kennel: RunningKennel): FullKennel {
  const { ca, broker, projections, ports } = kennel
  if (!ca || !broker || !projections || ports.mqtt === undefined || ports.api === undefined)
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      `this needs every role; KENNEL_ROLES is ${kennel.config.roles.join(',')}`,
    )
  return { ...kennel, ca, broker, projections, ports: { mqtt: ports.mqtt, api: ports.api, metrics: ports.metrics } }
}
