import crypto, { randomUUID } from 'node:crypto'
import type { AddressInfo, Socket } from 'node:net'
import type { TLSSocket, Server } from 'node:tls'
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes'
import { Registry } from 'prom-client'
import type { Config } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'
import type { EventMetadata, EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { type CertificateCheck, identifyPeer, isRefusal, type PeerIdentity, type PeerRefusal } from './authenticate.ts'
import { canPublish, canReceive, canSubscribe, inboxTopic } from './authorize.ts'
import type { ClusterParts } from './cluster.ts'
import { compileDenylist } from '../infra/net/denylist.ts'
import { type AdmissionConfig, createAdmission } from './admission.ts'
import { type RateLimitExceeded, securityStream } from '../infra/net/events.ts'
import { FoldedRefusals } from '../infra/net/folded-refusals.ts'
import {
  awaitingRelease,
  isOwnWill,
  limitPacketSize,
  markRedeliveries,
  onClosedByBroker,
  pendingWill,
  registeredClients,
  restoringSession,
  sharedEmitter,
  writeNumbersUncached,
} from './aedes-internals.ts'
import { type BrokerEvent, type DisconnectReason, type KickReason, kickReasons, mqttStream } from './events.ts'
import { createListener, type TlsMaterial } from './listener.ts'
import { type BrokerMetrics, createBrokerMetrics } from './metrics.ts'
import { type BrokerRateLimits, createRateLimits, type RateDecision, type RateRefusal } from './ratelimit.ts'
import { createRecorder } from './recorder.ts'
import { followRevocations } from './revocation.ts'
import { createSessions, type Session } from './sessions.ts'
import { createUnacknowledgedPublishes } from './unacknowledged.ts'
import type { SourceMetadata } from '../infra/keystore/sealed-source.ts'

// The MQTT broker (R2, R3, R4, R6, R9, R19): Aedes behind a mutual-TLS listener. Policy enters
// only through Aedes hooks (preConnect, authenticate, authorizePublish, authorizeSubscribe,
// authorizeForward), never by patching its handlers; decisions are the plain functions of authenticate.ts and
// authorize.ts; every action becomes an event through the recorder.

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

/** a live session the broker closes itself; sent to every node on KICK_TOPIC */
interface Kick {
  deviceId: string
  /** only the session using this certificate; absent = whichever session the device has */
  serial?: string
  reason: KickReason
}

const KICK_TOPIC = '$SYS/kennel/kick'
/** at most two ConnectionDenylisted events per source IP per minute: its first hit, then the rest counted */
const DENYLIST_EVENT_INTERVAL_MS = 60_000
/** at most two RateLimitExceeded events per limit, window and key per minute, as the API's */
const RATE_LIMIT_EVENT_INTERVAL_MS = 60_000
/** room for the fixed header, a 65,535-byte topic and a packet id around the payload */
const PACKET_OVERHEAD = 65_545

// the one-shot digest (Node ≥ 20.12) costs about a third of a Hash object's for a small payload
const sha256: (b: Buffer) => string =
  typeof crypto.hash === 'function'
    ? (b) => crypto.hash('sha256', b, 'hex')
    : (b) => crypto.createHash('sha256').update(b).digest('hex')

function connectError(message: string, returnCode: 2 | 3 | 4 | 5): Error & { returnCode: number } {
  return Object.assign(new Error(message), { returnCode })
}

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
  let closing = false

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
  // counted per publish: the labelled child is looked up once
  const messagesIn = metrics.messages.labels('in')

  const record = (stream: string, event: BrokerEvent, metadata: EventMetadata): Promise<void> =>
    recorder.record(stream, event, metadata)
  const refusalMeta = (id: PeerIdentity): EventMetadata => ({
    actor: `device:${id.deviceId}`,
    credential: `cert:${id.serial}`,
    sourceIp: id.ip,
  })
  /** an accepted connection's address as its events record it (toySource): sealed at its CONNECT
   * for the household the toy had then, and sealed again for a new one when the toy is paired
   * while connected (until that is done its events record no address); once sealed, never in
   * clear for the rest of the connection */
  type Source = { householdId: string | undefined; source: SourceMetadata; refreshing: boolean }
  const sources = new WeakMap<PeerIdentity, Source>()
  function sourceOf(id: PeerIdentity): SourceMetadata | undefined {
    const entry = sources.get(id)
    if (entry === undefined || opts.toySource === undefined) return undefined
    const household = opts.toySource.householdOf(id.deviceId)
    if (household === entry.householdId) return entry.source
    // unpaired while connected (its household erased: it is being cut off): never in clear again
    if (household === undefined) return {}
    if (!entry.refreshing) {
      entry.refreshing = true
      void Promise.resolve(opts.toySource.source(household, id.ip)).then(
        (source) => Object.assign(entry, { householdId: household, source, refreshing: false }),
        (err: unknown) => (
          (entry.refreshing = false),
          log.warn(
            { err, deviceId: id.deviceId },
            'cannot seal the address of a toy paired while connected; its events record none until it can',
          )
        ),
      )
    }
    return {}
  }
  /** DeviceConnected and DeviceDisconnected: the address as toySource says (sealed, clear or none) */
  const connectionMeta = (id: PeerIdentity): EventMetadata => {
    const source = sourceOf(id)
    return source === undefined
      ? refusalMeta(id)
      : { actor: `device:${id.deviceId}`, credential: `cert:${id.serial}`, ...source }
  }
  /** the other events of a session: a paired toy's address is on its connection's events only
   * (one connection, one address), not sealed again on every message; an unpaired one's in clear */
  const deviceMeta = (id: PeerIdentity): EventMetadata => {
    const source = sourceOf(id)
    return source === undefined || 'sourceIp' in source
      ? refusalMeta(id)
      : { actor: `device:${id.deviceId}`, credential: `cert:${id.serial}` }
  }
  /** the address in a connection event's data: only where it is recorded in clear */
  const clearIp = (id: PeerIdentity): { ip?: string } => {
    const source = sourceOf(id)
    return source === undefined || 'sourceIp' in source ? { ip: id.ip } : {}
  }

  function recordRefusal(r: PeerRefusal): Promise<void> {
    metrics.authFailures.inc({ reason: r.reason })
    const data = {
      reason: r.reason,
      ip: r.ip,
      fingerprint: r.fingerprint,
      deviceId: r.deviceId,
      serial: r.serial,
      detail: r.detail,
    }
    const metadata: EventMetadata = {
      actor: r.trusted && r.deviceId ? `device:${r.deviceId}` : 'anonymous',
      sourceIp: r.ip,
      ...(r.serial ? { credential: `cert:${r.serial}` } : {}),
    }
    // a certificate that chains to the device CA names a device we issued to; anything else is anonymous
    const stream = r.trusted && r.deviceId ? mqttStream(r.deviceId) : securityStream(now())
    return record(stream, { type: 'DeviceAuthFailed', data: JSON.parse(JSON.stringify(data)) }, metadata)
  }

  // the first refusal per limit, window and key (device or address) in a minute is recorded at
  // once; the rest of that minute as one event with their number, when it ends or on close (R11, R19)
  type Limited = { stream: string; event: RateLimitExceeded; metadata: EventMetadata }
  const recordLimited = ({ stream, event, metadata }: Limited, refusals: number): Promise<void> =>
    record(stream, { ...event, data: { ...event.data, refusals } }, metadata).catch(() => undefined)
  const limited = new FoldedRefusals<Limited>(RATE_LIMIT_EVENT_INTERVAL_MS, recordLimited)
  function recordRateLimit(refusal: RateRefusal, key: string, id: PeerIdentity): Promise<void> {
    metrics.rateLimited.inc({ limit: refusal.limit })
    const data: RateLimitExceeded['data'] = {
      listener: 'mqtt',
      limit: refusal.limit,
      window: refusal.window,
      deviceId: id.deviceId,
      serial: id.serial,
      ip: id.ip,
      retryAfterSeconds: Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)),
      refusals: 1,
    }
    const limit: Limited = {
      stream: mqttStream(id.deviceId),
      event: { type: 'RateLimitExceeded', data },
      metadata: refusalMeta(id),
    }
    return limited.count(`${refusal.limit}:${refusal.window}:${key}`, Date.now(), limit)
      ? record(limit.stream, limit.event, limit.metadata)
      : Promise.resolve()
  }

  // --- revocation and supersession (R3, R18) ---------------------------------------------
  function kickLocal(k: Kick): void {
    // every open connection of the device, registered with Aedes or still before CONNACK
    for (const client of sessions.ofDevice(k.deviceId)) {
      const session = sessions.get(client)
      if (!session || (k.serial !== undefined && session.identity.serial !== k.serial)) continue
      session.reason = k.reason
      session.suppressWill = true
      metrics.kicks.inc({ reason: k.reason })
      client.close()
    }
  }

  function broadcastKick(k: Kick): Promise<void> {
    return new Promise((resolve) => {
      aedes.publish(
        {
          cmd: 'publish',
          topic: KICK_TOPIC,
          payload: Buffer.from(JSON.stringify({ ...k, origin: aedes.id })),
          qos: 0,
          retain: false,
          dup: false,
        },
        () => resolve(),
      )
    })
  }

  const revocations = followRevocations(store, log, {
    onRevoked(r) {
      const k: Kick = {
        deviceId: r.deviceId,
        reason: 'revoked',
        ...(r.serial !== undefined ? { serial: r.serial } : {}),
      }
      kickLocal(k)
      // every node follows the store too; the message covers nodes whose follower lags
      void broadcastKick(k)
    },
    // each node runs its own grace timer from the same event, so no broadcast is needed
    onSuperseded: (s) => void kickLocal({ ...s, reason: 'superseded' }),
  })

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
    onClosedByBroker(client, () => sessions.note(client, closing ? 'broker-shutdown' : 'taken-over'))
    let decide!: () => void
    const decided = new Promise<void>((resolve) => (decide = () => (undecided.delete(client), resolve())))
    undecided.set(client, { decided, decide })
    socket.once('close', decide)
  }

  // A toy may send packets right behind its CONNECT, without waiting for the CONNACK [MQTT-3.1.4]:
  // Aedes can hand such a PUBLISH or SUBSCRIBE to the hooks before the CONNECT is decided (one
  // larger than a TLS record, read after the CONNECT's); it waits for the CONNACK, then is
  // decided as any other. Refused at once, it closed the connection before the CONNACK was sent.
  const undecided = new WeakMap<Client, { decided: Promise<void>; decide: () => void }>()

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

  // --- hooks -----------------------------------------------------------------------------
  aedes.authenticate = (client, _username, _password, done) => {
    // username and password are ignored: the certificate is the credential (R2)
    const authenticated = authenticate(client)
    authenticating.add(authenticated)
    void authenticated
      .then(
        () => done(null, true),
        (err: Error & { returnCode: number }) => done(err as never, false),
      )
      .finally(() => authenticating.delete(authenticated))
  }

  async function authenticate(client: Client): Promise<void> {
    const identity = identities.get(client.conn as TLSSocket)
    if (!identity) throw connectError('no verified certificate', 5)
    const ipLimit = await rateLimits.connectIp(identity.ip)
    if (!ipLimit.ok) {
      await recordRateLimit(ipLimit, identity.ip, identity)
      throw connectError('too many connects from this address', 3)
    }
    if (client.id !== identity.deviceId) {
      await recordRefusal({ ...identity, reason: 'client-id-mismatch', detail: client.id.slice(0, 80), trusted: true })
      throw connectError('client id must equal the certificate CN', 2) // KENNEL_ERR_CLIENT_ID_MISMATCH
    }
    const deviceLimit = await rateLimits.connectDevice(identity.deviceId)
    if (!deviceLimit.ok) {
      await recordRateLimit(deviceLimit, identity.deviceId, identity)
      throw connectError('too many connects for this device', 3) // KENNEL_ERR_RATE_LIMITED
    }
    // revoked between the handshake and this CONNECT
    if (revocations.revoked.device(identity.deviceId) || revocations.revoked.serial(identity.serial)) {
      await recordRefusal({
        ...identity,
        reason: revocations.revoked.device(identity.deviceId) ? 'device-revoked' : 'certificate-revoked',
        trusted: true,
      })
      throw connectError('certificate revoked', 5)
    }
    const will = pendingWill(client)
    if (will) {
      const decision = canPublish(identity.deviceId, will.topic)
      if (!decision.ok) {
        metrics.denials.inc({ kind: 'will' })
        await record(
          mqttStream(identity.deviceId),
          {
            type: 'PublishDenied',
            data: {
              deviceId: identity.deviceId,
              topic: String(will.topic).slice(0, 256),
              qos: will.qos,
              bytes: will.payload?.length ?? 0,
              reason: decision.reason,
              will: true,
            },
          },
          deviceMeta(identity),
        )
        throw connectError(`will topic refused: ${decision.reason}`, 5) // KENNEL_ERR_TOPIC_DENIED
      }
    }
    const connectionId = randomUUID()
    try {
      if (opts.toySource) {
        const householdId = opts.toySource.householdOf(identity.deviceId)
        sources.set(identity, {
          householdId,
          source: await opts.toySource.source(householdId, identity.ip),
          refreshing: false,
        })
      }
      await record(
        mqttStream(identity.deviceId),
        {
          type: 'DeviceConnected',
          data: {
            deviceId: identity.deviceId,
            serial: identity.serial,
            ...clearIp(identity),
            clean: client.clean,
            protocolVersion: client.version,
            connectionId,
          },
        },
        connectionMeta(identity),
      )
    } catch {
      throw connectError('event store unavailable', 3)
    }
    // from here on the connection ends with a DeviceDisconnected, whenever and however it ends
    const session = sessions.open(client, identity, connectionId, (session, reason) => {
      void record(
        mqttStream(identity.deviceId),
        {
          type: 'DeviceDisconnected',
          data: { deviceId: identity.deviceId, reason, ...clearIp(identity), connectionId: session.connectionId },
        },
        connectionMeta(identity),
      )
    })
    session.recordedAs = {
      stream: mqttStream(identity.deviceId),
      metadata: deviceMeta(identity),
      householdId: opts.toySource?.householdOf(identity.deviceId),
    }
    // connected while the broker closed: Aedes no longer answers it
    if (closing) endConnection(client, 'broker-shutdown')
  }

  function endConnection(client: Client, reason: DisconnectReason): void {
    sessions.note(client, reason)
    client.conn.destroy()
  }

  // the hot path of every publish: no promise unless the rate limits are counted in Redis or an
  // event is awaited, and the verdicts of Aedes' callback given as soon as they are known
  aedes.authorizePublish = (client, packet, done) => {
    const session = client ? sessions.get(client) : undefined
    if (client === null || isOwnWill(client, packet)) return done(willRefusal(session, packet))
    if (!session) {
      const connect = undecided.get(client)
      return connect
        ? void connect.decided.then(() => aedes.authorizePublish(client, packet, done))
        : done(new Error('not authenticated'))
    }
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? '')
    const decision =
      payload.length > config.maxPayloadBytes
        ? { ok: false as const, reason: `payload larger than ${config.maxPayloadBytes} bytes` }
        : canPublish(session.identity.deviceId, packet.topic)
    if (!decision.ok) return void denyPublish(session, packet, payload, decision.reason).then(done)
    // a QoS 2 message sent again before its PUBREL (DUP, or after a reconnect of a persistent
    // session) is the same message [MQTT-4.3.3]: Aedes answers it with PUBREC and routes nothing,
    // and its PublishAccepted is on record already
    if (packet.qos === 2) {
      return void awaitingRelease(aedes, client, packet).then((held) =>
        held ? done(null) : limitPublish(client, session, packet, payload, done),
      )
    }
    limitPublish(client, session, packet, payload, done)
  }

  function limitPublish(
    client: Client,
    session: Session,
    packet: PublishPacket,
    payload: Buffer,
    done: (err: Error | null) => void,
  ): void {
    const limit = rateLimits.publish(session.identity.deviceId, payload.length)
    if (limit instanceof Promise) void limit.then((l) => admitPublish(client, session, packet, payload, l, done), done)
    else admitPublish(client, session, packet, payload, limit, done)
  }

  /** a last will: a stale one (client null) from a node that died, or this client's own */
  function willRefusal(session: Session | undefined, packet: PublishPacket): Error | null {
    const owner = session?.identity.deviceId ?? String((packet as { clientId?: string }).clientId ?? '')
    if (session?.suppressWill || revocations.revoked.device(owner)) return new Error('will suppressed: device revoked')
    if (!canPublish(owner, packet.topic).ok) return new Error('will topic refused')
    return null
  }

  function denyPublish(session: Session, packet: PublishPacket, payload: Buffer, reason: string): Promise<Error> {
    const { identity } = session
    metrics.denials.inc({ kind: 'publish' })
    session.reason = 'publish-denied'
    return record(
      mqttStream(identity.deviceId),
      {
        type: 'PublishDenied',
        data: {
          deviceId: identity.deviceId,
          topic: String(packet.topic).slice(0, 256),
          qos: packet.qos,
          bytes: payload.length,
          reason,
          will: false,
        },
      },
      deviceMeta(identity),
    )
      .catch(() => undefined)
      .then(() => new KennelError('KENNEL_ERR_TOPIC_DENIED', reason))
  }

  function admitPublish(
    client: Client,
    session: Session,
    packet: PublishPacket,
    payload: Buffer,
    limit: RateDecision,
    done: (err: Error | null) => void,
  ): void {
    const { identity } = session
    if (!limit.ok) {
      session.reason = 'rate-limited'
      void recordRateLimit(limit, identity.deviceId, identity)
        .catch(() => undefined)
        .then(() => done(new KennelError('KENNEL_ERR_RATE_LIMITED', `${limit.limit} limit exceeded`)))
      return
    }
    // the PUBACK (QoS 1) and the routing wait for the event's commit, so an acknowledged publish
    // is never lost (R19); unrecorded, it is refused: the connection closes without a PUBACK, and
    // the toy sends the message again once reconnected (QoS 1 is at least once)
    const digest = sha256(payload)
    // the re-send of a publish whose event committed after its connection had closed (see
    // unacknowledged.ts): acknowledged and routed on the strength of that event
    if (packet.qos === 1 && unacknowledged.take(identity.deviceId, packet.messageId!, digest)) {
      messagesIn.inc()
      done(null)
      return
    }
    // the stream and metadata made once per session (again when the toy's household changed: a
    // toy paired while connected is sealed from then on); the data's keys in sorted order, as the
    // store writes them (canonical JSON), so that it is serialised without a sorted copy
    const householdId = opts.toySource?.householdOf(identity.deviceId)
    let recordedAs = session.recordedAs
    if (recordedAs === undefined || recordedAs.householdId !== householdId) {
      recordedAs = { stream: mqttStream(identity.deviceId), metadata: deviceMeta(identity), householdId }
      if (session.recordedAs !== undefined) session.recordedAs = recordedAs
    }
    const { stream, metadata } = recordedAs
    record(
      stream,
      {
        type: 'PublishAccepted',
        data: {
          bytes: payload.length,
          deviceId: identity.deviceId,
          qos: packet.qos,
          retain: packet.retain,
          sha256: digest,
          topic: packet.topic,
        },
      },
      metadata,
    ).then(
      () => {
        // committed, but Aedes will neither acknowledge nor route it: its connection is gone
        if (packet.qos === 1 && !client.connected) unacknowledged.remember(identity.deviceId, packet.messageId!, digest)
        messagesIn.inc()
        done(null)
      },
      (err: unknown) => {
        session.reason ??= 'event-store-unavailable'
        done(
          new KennelError('KENNEL_ERR_UNAVAILABLE', 'publish refused: it could not be recorded', undefined, {
            cause: err,
          }),
        )
      },
    )
  }

  aedes.authorizeSubscribe = (client, sub, done) => {
    // a denial is `null` (SUBACK 0x80, the connection kept), never an Error while a persistent
    // session is restored: that would abort every reconnect (Aedes re-runs the hook for each
    // stored subscription and treats an Error as fatal for the connection). Only a live SUBSCRIBE
    // over the device's limit is an Error, which closes the connection as a publish over it does.
    void authorizeSubscribe(client, sub).then(
      (granted) => (granted instanceof Error ? done(granted, null) : done(null, granted)),
      () => done(null, null),
    )
  }

  /** the filters each connection holds (restored ones included), against KENNEL_MQTT_MAX_SUBSCRIPTIONS */
  const filters = new WeakMap<Client, Set<string>>()
  aedes.on('unsubscribe', (topics, client) => {
    const held = client ? filters.get(client) : undefined
    for (const topic of topics) held?.delete(topic)
  })

  async function authorizeSubscribe(client: Client, sub: Subscription): Promise<Subscription | null | Error> {
    const session = sessions.get(client)
    if (!session) {
      const connect = undecided.get(client)
      return connect ? connect.decided.then(() => authorizeSubscribe(client, sub)) : null
    }
    const { identity } = session
    // every filter of a live SUBSCRIBE is counted, granted or not: each is an event and, granted,
    // memory in the broker (R6); what a persistent session restores was counted when granted
    if (!restoringSession(client)) {
      const limit = await rateLimits.subscribe(identity.deviceId)
      if (!limit.ok) {
        session.reason = 'rate-limited'
        await recordRateLimit(limit, identity.deviceId, identity).catch(() => undefined)
        return new KennelError('KENNEL_ERR_RATE_LIMITED', `${limit.limit} limit exceeded`)
      }
    }
    let held = filters.get(client)
    if (!held) filters.set(client, (held = new Set()))
    const over = !held.has(sub.topic) && held.size >= config.mqttMaxSubscriptions
    const decision = over
      ? { ok: false as const, reason: `more than ${config.mqttMaxSubscriptions} subscriptions` }
      : canSubscribe(identity.deviceId, sub.topic)
    if (!decision.ok) {
      metrics.denials.inc({ kind: 'subscribe' })
      await record(
        mqttStream(identity.deviceId),
        {
          type: 'SubscriptionDenied',
          data: { deviceId: identity.deviceId, filter: String(sub.topic).slice(0, 256), reason: decision.reason },
        },
        deviceMeta(identity),
      )
      return null
    }
    held.add(sub.topic)
    void record(
      mqttStream(identity.deviceId),
      { type: 'SubscriptionGranted', data: { deviceId: identity.deviceId, filter: sub.topic, qos: sub.qos } },
      deviceMeta(identity),
    )
    return sub
  }

  aedes.authorizeForward = (client, packet: AedesPublishPacket) => {
    const session = sessions.get(client)
    if (session && canReceive(session.identity.deviceId, packet.topic)) return packet
    metrics.denials.inc({ kind: 'forward' })
    return null
  }

  // --- lifecycle events ------------------------------------------------------------------
  aedes.on('connackSent', (connack, client) => {
    undecided.get(client)?.decide()
    if (connack.returnCode === 0) admission.authenticated(client.conn as TLSSocket)
  })
  // the DeviceDisconnected itself is recorded when the socket closes (broker/sessions.ts)
  aedes.on('keepaliveTimeout', (client) => sessions.note(client, 'keepalive-timeout'))
  // clientError once the CONNECT was read, connectionError before (garbage in the CONNECT's own segment)
  aedes.on('clientError', (client, err) => sessions.note(client, errorReason(err)))
  aedes.on('connectionError', (client, err) => sessions.note(client, errorReason(err)))

  // cross-node kicks (R3): every broker listens; the message only comes from brokers, since a
  // toy can neither publish nor subscribe under $SYS
  const mq = sharedEmitter(aedes)
  await new Promise<void>((resolve) => {
    mq.on(
      KICK_TOPIC,
      (packet, cb) => {
        try {
          const k = JSON.parse(packet.payload.toString()) as Kick & { origin: string }
          const valid =
            typeof k.deviceId === 'string' &&
            (k.serial === undefined || typeof k.serial === 'string') &&
            kickReasons.includes(k.reason)
          if (k.origin !== aedes.id && valid) kickLocal(k)
        } catch (err) {
          log.warn({ err }, 'malformed kick message')
        }
        cb()
      },
      resolve,
    )
  })
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
      kickLocal(k)
      await broadcastKick(k)
    },
    flushEvents: () => recorder.flush(),
    async close() {
      if (closing) return
      closing = true
      await revocations.stop()
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()))
      admission.destroyAll()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      // connections before CONNACK are not Aedes' clients yet: their sessions end here too
      await Promise.allSettled([...authenticating])
      await Promise.all(sessions.live().map(({ client, ended }) => (endConnection(client, 'broker-shutdown'), ended)))
      await serverClosed
      await Promise.all([denied.flush(), limited.flush()])
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
