import { randomUUID } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import type { Aedes, Client, ConnectPacket } from 'aedes'
import { isKennelError, KennelError } from '../../infra/errors.ts'
import { canPublish } from '../authorize.ts'
import { mqttStream } from '../events.ts'
import type { HookContext } from './context.ts'

// Aedes `preConnect` and `authenticate` (R2, R3, R9, R19): the CONNECT of a connection whose
// certificate passed the handshake (broker.ts onSecureConnection). Connects per address, client
// id = CN, connects per device, revoked since the handshake, the will's topic; then
// DeviceConnected is appended and only then CONNACK 0 is sent. preConnect refuses nothing: Aedes
// closes a connection refused there without a CONNACK, so every refusal is authenticate's.

/** Aedes answers a refused CONNECT with the error's `returnCode` (2 to 5, else 5): a KennelError's is
 * the CONNACK column of the catalogue (infra/errors.ts) */
function withReturnCode(err: unknown): Error & { returnCode: number } {
  const error = err instanceof Error ? err : new Error(String(err))
  return Object.assign(error, { returnCode: isKennelError(error) ? error.connackCode : 5 })
}

export function connectHooks(ctx: HookContext): Pick<Aedes, 'preConnect' | 'authenticate'> {
  const { identities, rateLimits, metrics, revocations, sessions, authenticating, endConnection } = ctx
  const { record, recordRefusal, recordRateLimit, sources, clearIp, connectionMeta, deviceMeta } = ctx.records
  const { toySource } = ctx
  // Aedes gives the CONNECT packet to preConnect only; authenticate reads its will and clean flag
  // here rather than in the client's private fields
  const connects = new WeakMap<Client, ConnectPacket>()

  async function authenticate(client: Client): Promise<void> {
    const identity = identities.get(client.conn as TLSSocket)
    if (!identity) throw new KennelError('KENNEL_ERR_CERT_INVALID', 'no verified certificate')
    const ipLimit = await rateLimits.connectIp(identity.ip)
    if (!ipLimit.ok) {
      await recordRateLimit(ipLimit, identity.ip, identity)
      throw new KennelError('KENNEL_ERR_RATE_LIMITED', 'too many connects from this address')
    }
    if (client.id !== identity.deviceId) {
      await recordRefusal({ ...identity, reason: 'client-id-mismatch', detail: client.id.slice(0, 80), trusted: true })
      throw new KennelError('KENNEL_ERR_CLIENT_ID_MISMATCH', 'client id must equal the certificate CN')
    }
    const deviceLimit = await rateLimits.connectDevice(identity.deviceId)
    if (!deviceLimit.ok) {
      await recordRateLimit(deviceLimit, identity.deviceId, identity)
      throw new KennelError('KENNEL_ERR_RATE_LIMITED', 'too many connects for this device')
    }
    // revoked between the handshake and this CONNECT
    if (revocations.revoked.device(identity.deviceId) || revocations.revoked.serial(identity.serial)) {
      const deviceRevoked = revocations.revoked.device(identity.deviceId)
      await recordRefusal({
        ...identity,
        reason: deviceRevoked ? 'device-revoked' : 'certificate-revoked',
        trusted: true,
      })
      throw deviceRevoked
        ? new KennelError('KENNEL_ERR_DEVICE_REVOKED', 'device revoked')
        : new KennelError('KENNEL_ERR_CERT_REVOKED', 'certificate revoked')
    }
    const connect = connects.get(client)
    connects.delete(client)
    if (!connect) throw new KennelError('KENNEL_ERR_INTERNAL', 'CONNECT not seen by preConnect')
    const will = connect.will
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
              qos: will.qos ?? 0,
              bytes: will.payload?.length ?? 0,
              reason: decision.reason,
              will: true,
            },
          },
          deviceMeta(identity),
        )
        throw new KennelError('KENNEL_ERR_TOPIC_DENIED', `will topic refused: ${decision.reason}`)
      }
    }
    const connectionId = randomUUID()
    try {
      if (toySource) {
        const householdId = toySource.householdOf(identity.deviceId)
        sources.set(identity, {
          householdId,
          source: await toySource.source(householdId, identity.ip),
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
            clean: connect.clean ?? true,
            protocolVersion: client.version,
            connectionId,
          },
        },
        connectionMeta(identity),
      )
    } catch {
      throw new KennelError('KENNEL_ERR_UNAVAILABLE', 'event store unavailable')
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
      householdId: toySource?.householdOf(identity.deviceId),
    }
    // connected while the broker closed: Aedes no longer answers it
    if (ctx.closing) endConnection(client, 'broker-shutdown')
  }

  return {
    preConnect(client, packet, done) {
      connects.set(client, packet)
      done(null, true)
    },
    authenticate(client, _username, _password, done) {
      // username and password are ignored: the certificate is the credential (R2)
      const authenticated = authenticate(client)
      authenticating.add(authenticated)
      void authenticated
        .then(
          () => done(null, true),
          (err: unknown) => done(withReturnCode(err) as never, false),
        )
        .finally(() => authenticating.delete(authenticated))
    },
  }
}
