import type { Aedes, Client, Subscription } from 'aedes'
import { KennelError } from '../../infra/errors.ts'
import { restoringSession } from '../aedes-internals.ts'
import { canSubscribe } from '../authorize.ts'
import { mqttStream } from '../events.ts'
import type { HookContext } from './context.ts'

// Aedes `authorizeSubscribe` (R4, R6): a toy subscribes only under its own prefix,
// `toys/{deviceId}/`, within its subscribe rate limit and KENNEL_MQTT_MAX_SUBSCRIPTIONS filters;
// each grant and each denial is an event.

export function subscribeHook(ctx: HookContext): Aedes['authorizeSubscribe'] {
  const { aedes, config, sessions, metrics, rateLimits, undecided } = ctx
  const { record, recordRateLimit, deviceMeta } = ctx.records

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

  return (client, sub, done) => {
    // a denial is `null` (SUBACK 0x80, the connection kept), never an Error while a persistent
    // session is restored: that would abort every reconnect (Aedes re-runs the hook for each
    // stored subscription and treats an Error as fatal for the connection). Only a live SUBSCRIBE
    // over the device's limit is an Error, which closes the connection as a publish over it does.
    void authorizeSubscribe(client, sub).then(
      (granted) => (granted instanceof Error ? done(granted, null) : done(null, granted)),
      () => done(null, null),
    )
  }
}
