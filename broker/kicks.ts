import type { Aedes } from 'aedes'
import type { Logger } from '../infra/log.ts'
import { sharedEmitter } from './aedes-internals.ts'
import { type KickReason, kickReasons } from './events.ts'
import type { BrokerMetrics } from './metrics.ts'
import type { Sessions } from './sessions.ts'

// Revocation and supersession (R3, R18): the broker closes a device's live sessions itself, their
// wills suppressed, on this node and, through the shared emitter, on every node of a cluster.

/** a live session the broker closes itself; sent to every node on KICK_TOPIC */
export interface Kick {
  deviceId: string
  /** only the session using this certificate; absent = whichever session the device has */
  serial?: string
  reason: KickReason
}

const KICK_TOPIC = '$SYS/kennel/kick'

export interface Kicks {
  /** close the device's sessions on this node */
  local(k: Kick): void
  /** tell the other nodes of the cluster */
  broadcast(k: Kick): Promise<void>
  /** follow the other nodes' kicks; resolves once subscribed */
  follow(): Promise<void>
}

export function createKicks({
  aedes,
  sessions,
  metrics,
  log,
}: {
  aedes: Aedes
  sessions: Sessions
  metrics: BrokerMetrics
  log: Logger
}): Kicks {
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

  // cross-node kicks (R3): every broker listens; the message only comes from brokers, since a
  // toy can neither publish nor subscribe under $SYS
  function followKicks(): Promise<void> {
    const mq = sharedEmitter(aedes)
    return new Promise<void>((resolve) => {
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
  }

  return { local: kickLocal, broadcast: broadcastKick, follow: followKicks }
}
