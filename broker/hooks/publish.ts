import crypto from 'node:crypto'
import type { Aedes, Client, PublishPacket } from 'aedes'
import { KennelError } from '../../infra/errors.ts'
import { awaitingRelease, isOwnWill, willOwner } from '../aedes-internals.ts'
import { canPublish } from '../authorize.ts'
import { mqttStream } from '../events.ts'
import type { RateDecision } from '../ratelimit.ts'
import type { Session } from '../sessions.ts'
import type { HookContext } from './context.ts'

// Aedes `authorizePublish` (R4, R9, R11, R19): a toy's publish (its topic, its size, the publish
// rate limits) and the last wills, its own and stale ones. An accepted publish is acknowledged
// and routed once its PublishAccepted is on record.

// the one-shot digest (Node ≥ 20.12) costs about a third of a Hash object's for a small payload
export const sha256: (b: Buffer) => string =
  typeof crypto.hash === 'function'
    ? (b) => crypto.hash('sha256', b, 'hex')
    : (b) => crypto.createHash('sha256').update(b).digest('hex')

export function publishHook(ctx: HookContext): Aedes['authorizePublish'] {
  const { aedes, config, toySource, sessions, rateLimits, metrics, revocations, unacknowledged, undecided } = ctx
  const { record, recordRateLimit, deviceMeta } = ctx.records
  // counted per publish: the labelled child is looked up once
  const messagesIn = metrics.messages.labels('in')

  /** a last will: a stale one (client null) from a node that died, or this client's own */
  function willRefusal(session: Session | undefined, packet: PublishPacket): Error | null {
    const owner = session?.identity.deviceId ?? willOwner(packet)
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
    const householdId = toySource?.householdOf(identity.deviceId)
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

  /** the topics each toy holds a retained message on (this node's count: the embedded broker's
   * retained messages are in its memory; a cluster's, in Redis, are counted per node), against
   * KENNEL_MQTT_MAX_RETAINED: unbounded, one toy retained 30,000 topics (95 MB of the broker's
   * memory, kept after it was revoked) */
  const retained = new Map<string, Set<string>>()
  function retainRefusal(deviceId: string, topic: string, bytes: number): string | undefined {
    let topics = retained.get(deviceId)
    // an empty retained message clears its topic [MQTT-3.3.1-10]
    if (bytes === 0) {
      topics?.delete(topic)
      return undefined
    }
    if (topics?.has(topic)) return undefined
    if ((topics?.size ?? 0) >= config.mqttMaxRetained)
      return `more than ${config.mqttMaxRetained} topics with a retained message`
    if (!topics) retained.set(deviceId, (topics = new Set()))
    topics.add(topic)
    return undefined
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

  // the hot path of every publish: no promise unless the rate limits are counted in Redis or an
  // event is awaited, and the verdicts of Aedes' callback given as soon as they are known
  const authorizePublish: Aedes['authorizePublish'] = (client, packet, done) => {
    const session = client ? sessions.get(client) : undefined
    if (client === null || isOwnWill(client, packet)) return done(willRefusal(session, packet))
    if (!session) {
      const connect = undecided.get(client)
      return connect
        ? void connect.decided.then(() => authorizePublish(client, packet, done))
        : done(new Error('not authenticated'))
    }
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? '')
    const decision =
      payload.length > config.maxPayloadBytes
        ? { ok: false as const, reason: `payload larger than ${config.maxPayloadBytes} bytes` }
        : canPublish(session.identity.deviceId, packet.topic)
    if (!decision.ok) return void denyPublish(session, packet, payload, decision.reason).then(done)
    const overRetained = packet.retain
      ? retainRefusal(session.identity.deviceId, packet.topic, payload.length)
      : undefined
    if (overRetained !== undefined) return void denyPublish(session, packet, payload, overRetained).then(done)
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
  return authorizePublish
}
