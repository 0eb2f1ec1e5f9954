import type { AddressInfo, Socket } from 'node:net'
import type { TLSSocket, Server } from 'node:tls'
import { Aedes, type Client } from 'aedes'
import { Registry } from 'prom-client'
import type { Config } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'
import type { EventMetadata, EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { type CertificateCheck, identifyPeer, isRefusal, type PeerIdentity } from './authenticate.ts'
import { inboxTopic } from './authorize.ts'
import type { ClusterParts } from './cluster.ts'
import { compileDenylist } from '../infra/net/denylist.ts'
import { type AdmissionConfig, createAdmission } from './admission.ts'
import { securityStream } from '../infra/net/events.ts'
import { FoldedRefusals } from '../infra/net/folded-refusals.ts'
import {
  limitPacketSize,
  markRedeliveries,
  onClosedByBroker,
  registeredClients,
  writeNumbersUncached,
} from './aedes-internals.ts'
import { type BrokerEvent, type DisconnectReason, type KickReason, mqttStream } from './events.ts'
import { connectHooks } from './hooks/connect.ts'
import type { HookContext } from './hooks/context.ts'
import { forwardHook } from './hooks/forward.ts'
import { publishHook, sha256 } from './hooks/publish.ts'
import { createDeviceRecords } from './hooks/records.ts'
import { subscribeHook } from './hooks/subscribe.ts'
import { createKicks, type Kick } from './kicks.ts'
import { createListener, type TlsMaterial } from './listener.ts'
import { type BrokerMetrics, createBrokerMetrics } from './metrics.ts'
import { type BrokerRateLimits, createRateLimits } from './ratelimit.ts'
import { createRecorder } from './recorder.ts'
import { followRevocations } from './revocation.ts'
import { createSessions } from './sessions.ts'
import { createUnacknowledgedPublishes } from './unacknowledged.ts'
import type { SourceMetadata } from '../infra/keystore/sealed-source.ts'

// The MQTT broker (R2, R3, R4, R6, R9, R19): Aedes behind a mutual-TLS listener. Policy enters
// only through Aedes hooks (preConnect, authenticate, authorizePublish, authorizeSubscribe,
// authorizeForward), never by patching its handlers; each hook is its own file in hooks/
// (connect.ts, publish.ts, subscribe.ts, forward.ts), made from the state they share
// (hooks/context.ts); decisions are the plain functions of authenticate.ts and authorize.ts;
// every action becomes an event through the recorder. Kicks are kicks.ts; every cast into Aedes'
// internals is aedes-internals.ts.

export type BrokerConfig = Pick<
  Config,
  | 'host'
  | 'mqttPort'
  | 'maxPayloadBytes'
  | 'mqttConnectLimits'
  | 'mqttConnectIpLimits'
  | 'mqttPublishLimits'
  | 'mqttByteLimits'
  | 'mqttSubscribeLimits'
  | 'mqttMaxSubscriptions'
  | 'mqttMaxRetained'
  | 'denylist'
  | 'redisUrl'
  | 'tlsMinVersion'
  | 'tlsCiphers'
  | 'tlsCurves'
> &
  AdmissionConfig

export interface BrokerOptions {
  config: BrokerConfig
  store: EventStore
  /** trusted device CA(s) and the server certificate (devices/ca.ts, devices/server-tls.ts) */
  tls: TlsMaterial
  /** the device registry's verdict (devices/registry.ts checkCertificate over its read model) */
  checkCertificate: CertificateCheck
  log: Logger
  /** where the metrics go; a new registry by default */
  registry?: Registry
  /** default: from config, in Redis when config.redisUrl is set */
  rateLimits?: BrokerRateLimits
  /** Redis key prefix in cluster mode (default `kennel:`); tests use one per run */
  clusterKeyPrefix?: string
  now?: () => Date
  /** what the events of an accepted connection record of the toy's address (R12): a paired toy's
   * sealed with its household's key, an unpaired one's in clear; default: in clear. Refusals
   * always record it in clear. */
  toySource?: ToySource
}

/** a toy's household and what its events record of its address (bin/start.ts wires the broker's
 * devices view and infra/keystore/sealed-source.ts HouseholdSources) */
export interface ToySource {
  /** the toy's household now; undefined while it is unpaired */
  householdOf(deviceId: string): string | undefined
  /** what its events record of `ip` for that household: clear, sealed, or nothing */
  source(householdId: string | undefined, ip: string): SourceMetadata | Promise<SourceMetadata>
}

export interface Broker {
  /** start listening; resolves with the bound port (0 = any free port) */
  listen(port?: number, host?: string): Promise<number>
  /** send a message to a toy's inbox, `toys/{deviceId}/inbox/{subtopic}` (the API's publisher) */
  publishToDevice(
    deviceId: string,
    subtopic: string,
    payload: Buffer | string,
    options?: { qos?: 0 | 1; retain?: boolean },
  ): Promise<void>
  /** close a device's live session (only the one using `serial`, when given) on every broker of
   * the cluster, its will suppressed; `reason` is the DeviceDisconnected reason */
  kick(deviceId: string, reason: KickReason, serial?: string): Promise<void>
  /** number of clients connected to this process */
  connectedClients(): number
  readonly metrics: BrokerMetrics
  readonly aedes: Aedes
  readonly server: Server
  /** append every queued event */
  flushEvents(): Promise<void>
  close(): Promise<void>
}

/** at most two ConnectionDenylisted events per source IP per minute: its first hit, then the rest counted */
const DENYLIST_EVENT_INTERVAL_MS = 60_000
/** room for the fixed header, a 65,535-byte topic and a packet id around the payload */
const PACKET_OVERHEAD = 65_545

export async function createBroker(opts: BrokerOptions): Promise<Broker> {
  const { config, store, log } = opts
  const now = opts.now ?? (() => new Date())
  // the Redis clients are loaded only in cluster mode
  const cluster: ClusterParts | undefined = config.redisUrl
    ? (await import('./cluster.ts')).createClusterParts({ redisUrl: config.redisUrl, keyPrefix: opts.clusterKeyPrefix })
    : undefined
  const rateLimits =
    opts.rateLimits ??
    createRateLimits(
      config,
      cluster ? { redis: cluster.rateLimitClient, prefix: opts.clusterKeyPrefix ?? 'kennel:' } : {},
    )
  const identities = new WeakMap<TLSSocket, PeerIdentity>()
  const sessions = createSessions()
  const unacknowledged = createUnacknowledgedPublishes()
  /** authentications in progress: a DeviceConnected may still be recorded for each */
  const authenticating = new Set<Promise<void>>()

  writeNumbersUncached()
  const aedes = new Aedes({
    ...(cluster ? { mq: cluster.mq, persistence: cluster.persistence } : {}),
    // client id = device id (≤ 64 characters, devices/device-id.ts) [MQTT-3.1.3-5]
    maxClientsIdLength: 64,
    // a backstop: the listener's deadline (admission.ts) closes a client without CONNACK 0 first
    connectTimeout: 2 * config.connectTimeoutSeconds * 1000,
  })
  const clients = (): Record<string, Client> => registeredClients(aedes)
  const metrics = createBrokerMetrics(
    opts.registry ?? new Registry(),
    () => Object.keys(clients()).length,
    () => admission.size,
  )
  const recorder = createRecorder(store, log, { onFailure: (events) => metrics.appendFailures.inc(events) })

  const record = (stream: string, event: BrokerEvent, metadata: EventMetadata): Promise<void> =>
    recorder.record(stream, event, metadata)
  const records = createDeviceRecords({ record, metrics, log, now, toySource: opts.toySource })
  const { recordRefusal } = records

  // --- revocation and supersession (R3, R18) ---------------------------------------------
  const kicks = createKicks({ aedes, sessions, metrics, log })
  const revocations = followRevocations(store, log, {
    onRevoked(r) {
      const k: Kick = {
        deviceId: r.deviceId,
        reason: 'revoked',
        ...(r.serial !== undefined ? { serial: r.serial } : {}),
      }
      kicks.local(k)
      // every node follows the store too; the message covers nodes whose follower lags
      void kicks.broadcast(k)
    },
    // each node runs its own grace timer from the same event, so no broadcast is needed
    onSuperseded: (s) => void kicks.local({ ...s, reason: 'superseded' }),
  })

  // --- hooks (hooks/*.ts) ----------------------------------------------------------------
  const ctx: HookContext = {
    aedes,
    config,
    toySource: opts.toySource,
    identities,
    sessions,
    unacknowledged,
    rateLimits,
    metrics,
    revocations,
    records,
    undecided: new WeakMap(),
    authenticating,
    endConnection,
    closing: false,
  }
  const connect = connectHooks(ctx)
  aedes.preConnect = connect.preConnect
  aedes.authenticate = connect.authenticate
  aedes.authorizePublish = publishHook(ctx)
  aedes.authorizeSubscribe = subscribeHook(ctx)
  aedes.authorizeForward = forwardHook(ctx)

  function endConnection(client: Client, reason: DisconnectReason): void {
    sessions.note(client, reason)
    client.conn.destroy()
  }

  // --- connection ------------------------------------------------------------------------
  const denylist = compileDenylist(config.denylist)
  // the first hit from an address is recorded at once; the rest of its minute together when the
  // minute ends or on close
  const recordDenied = (
    { ip, port, cidr }: { ip: string; port: number | undefined; cidr: string },
    hits: number,
  ): Promise<void> =>
    record(
      securityStream(now()),
      { type: 'ConnectionDenylisted', data: { listener: 'mqtt', ip, port, cidr, hits } },
      { actor: 'anonymous', sourceIp: ip },
    ).catch(() => undefined)
  const denied = new FoldedRefusals(DENYLIST_EVENT_INTERVAL_MS, recordDenied)
  const admission = createAdmission({ config, metrics, record, now, log })
  function onDenied(socket: Socket, cidr: string): void {
    metrics.denylistHits.inc()
    const subject = { ip: socket.remoteAddress ?? 'unknown', port: socket.remotePort, cidr }
    if (denied.count(subject.ip, Date.now(), subject)) void recordDenied(subject, 1)
  }

  function onSecureConnection(socket: TLSSocket): void {
    // the identity is read once per connection: a TLS 1.2 renegotiation must not present another
    socket.disableRenegotiation()
    const peer = identifyPeer(socket, opts.checkCertificate, revocations.revoked, now())
    if (isRefusal(peer)) {
      // refused before any MQTT byte is read; the reason is on record before the socket closes (R19)
      socket.pause()
      void recordRefusal(peer)
        .catch(() => undefined)
        .finally(() => socket.destroy())
      return
    }
    identities.set(socket, peer)
    const client = aedes.handle(socket)
    limitPacketSize(client, config.maxPayloadBytes + PACKET_OVERHEAD, () => sessions.note(client, 'protocol-error'))
    onClosedByBroker(client, () => sessions.note(client, ctx.closing ? 'broker-shutdown' : 'taken-over'))
    let decide!: () => void
    const decided = new Promise<void>((resolve) => (decide = () => (ctx.undecided.delete(client), resolve())))
    ctx.undecided.set(client, { decided, decide })
    socket.once('close', decide)
  }

  const server = createListener(config, opts.tls, {
    denylist,
    onDenied,
    unauthenticated: admission,
    onSecureConnection,
    onTlsError(err, socket) {
      if (denylist(socket.remoteAddress)) return
      metrics.authFailures.inc({ reason: 'tls-handshake' })
      log.debug({ err: err.message, ip: socket.remoteAddress }, 'TLS handshake failed')
    },
  })

  // --- lifecycle events ------------------------------------------------------------------
  aedes.on('connackSent', (connack, client) => {
    ctx.undecided.get(client)?.decide()
    if (connack.returnCode === 0) admission.authenticated(client.conn as TLSSocket)
  })
  // the DeviceDisconnected itself is recorded when the socket closes (broker/sessions.ts)
  aedes.on('keepaliveTimeout', (client) => sessions.note(client, 'keepalive-timeout'))
  // clientError once the CONNECT was read, connectionError before (garbage in the CONNECT's own segment)
  aedes.on('clientError', (client, err) => sessions.note(client, errorReason(err)))
  aedes.on('connectionError', (client, err) => sessions.note(client, errorReason(err)))

  await kicks.follow()
  await aedes.listen()
  // the persistence exists once Aedes listens; no toy can connect before the server does
  markRedeliveries(aedes)
  await revocations.ready

  return {
    aedes,
    server,
    metrics,
    connectedClients: () => Object.keys(clients()).length,
    listen(port = config.mqttPort, host = config.host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => {
          server.off('error', reject)
          resolve((server.address() as AddressInfo).port)
        })
      })
    },
    async publishToDevice(deviceId, subtopic, payload, options = {}) {
      const target = inboxTopic(deviceId, subtopic)
      if (!target.ok || target.topic === undefined)
        throw new KennelError('KENNEL_ERR_TOPIC_DENIED', target.ok ? 'invalid topic' : target.reason)
      const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
      if (buf.length > config.maxPayloadBytes)
        throw new KennelError('KENNEL_ERR_PAYLOAD_TOO_LARGE', `payload larger than ${config.maxPayloadBytes} bytes`)
      const qos = options.qos ?? 1
      await new Promise<void>((resolve, reject) => {
        aedes.publish(
          { cmd: 'publish', topic: target.topic!, payload: buf, qos, retain: options.retain ?? false, dup: false },
          (err?: Error) => (err ? reject(err) : resolve()),
        )
      })
      metrics.messages.inc({ direction: 'inbox' })
      void record(
        mqttStream(deviceId),
        {
          type: 'InboxMessagePublished',
          data: { deviceId, topic: target.topic, qos, bytes: buf.length, sha256: sha256(buf) },
        },
        { actor: 'system:broker' },
      )
    },
    async kick(deviceId, reason, serial) {
      const k: Kick = { deviceId, reason, ...(serial !== undefined ? { serial } : {}) }
      kicks.local(k)
      await kicks.broadcast(k)
    },
    flushEvents: () => recorder.flush(),
    async close() {
      if (ctx.closing) return
      ctx.closing = true
      await revocations.stop()
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()))
      admission.destroyAll()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      // connections before CONNACK are not Aedes' clients yet: their sessions end here too
      await Promise.allSettled([...authenticating])
      await Promise.all(sessions.live().map(({ client, ended }) => (endConnection(client, 'broker-shutdown'), ended)))
      await serverClosed
      await Promise.all([denied.flush(), records.flush()])
      await admission.flush()
      await recorder.flush()
      await cluster?.close()
    },
  }
}

/** a socket's own failure (ECONNRESET, EPIPE) loses the connection; anything else is the peer breaking the protocol */
function errorReason(err: Error): DisconnectReason {
  return 'syscall' in err ? 'connection-lost' : 'protocol-error'
}
