import type { Aedes, Client, Subscription } from 'aedes'
import { canSubscribe } from '../authorize.ts'
import { mqttStream } from '../events.ts'
import type { HookContext } from './context.ts'

// Aedes `authorizeSubscribe` (R4): a toy subscribes only under its own prefix, `toys/{deviceId}/`;
// each grant and each denial is an event.

export function subscribeHook(ctx: HookContext): Aedes['authorizeSubscribe'] {
  const { sessions, metrics } = ctx
  const { record, deviceMeta } = ctx.records

  async function authorizeSubscribe(client: Client, sub: Subscription): Promise<Subscription | null> {
    const session = sessions.get(client)
    if (!session) return null
    const { identity } = session
    const decision = canSubscribe(identity.deviceId, sub.topic)
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
    void record(
      mqttStream(identity.deviceId),
      { type: 'SubscriptionGranted', data: { deviceId: identity.deviceId, filter: sub.topic, qos: sub.qos } },
      deviceMeta(identity),
    )
    return sub
  }

  return (client, sub, done) => {
    // a denial is `null`, never an Error: SUBACK 0x80 keeps the connection, and an Error while a
    // persistent session is restored would abort every reconnect (Aedes re-runs the hook for each
    // stored subscription and treats an Error as fatal for the connection)
    void authorizeSubscribe(client, sub).then(
      (granted) => done(null, granted),
      () => done(null, null),
    )
  }
}
