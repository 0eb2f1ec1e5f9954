import t from 'tap'
import type { Packet } from 'mqtt-packet'
import { rawConnect } from './raw-client.ts'
import { nextMessage, redisSkip, startBrokerSystem, subscribeCodes, uniqueId } from './system.ts'

// R6 for SUBSCRIBE: every filter of a SUBSCRIBE is an event (SubscriptionGranted or
// SubscriptionDenied) and, granted, an entry in the broker's memory. Unlimited, one toy sent
// 20 packets of 5,000 filters each under its own prefix: 100,000 events and 100,000 subscriptions
// in 8 seconds (the broker's RSS grew by about 400 MB). Filters count against
// KENNEL_MQTT_SUBSCRIBE_LIMITS per device, and a connection holds at most
// KENNEL_MQTT_MAX_SUBSCRIPTIONS filters.

const filterFlood = (prefix: string, n: number, messageId = 1): Packet =>
  ({
    cmd: 'subscribe',
    messageId,
    subscriptions: Array.from({ length: n }, (_, i) => ({ topic: `${prefix}${i}`, qos: 1 })),
  }) as Packet

const redisUrl = process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const counts: Array<{ name: string; env: Record<string, string>; skip: false | string }> = [
  { name: 'in memory', env: {}, skip: false },
  { name: 'in Redis', env: { KENNEL_REDIS_URL: redisUrl }, skip: await redisSkip(redisUrl) },
]

for (const count of counts)
  t.test(
    `limits counted ${count.name}: a SUBSCRIBE flood is cut off at the device limit: the connection closes, events stay bounded`,
    { skip: count.skip },
    async (t) => {
      const sys = await startBrokerSystem(t, {
        KENNEL_MQTT_SUBSCRIBE_LIMITS: '50/minute',
        KENNEL_MQTT_MAX_SUBSCRIPTIONS: '100000',
        ...count.env,
      })
      const device = await sys.enroll(uniqueId('flooder'))
      const raw = await rawConnect(sys.port, device, device.caPem)
      raw.send(filterFlood(`toys/${device.deviceId}/s/`, 2000))
      // the SUBACK, or the connection's close before it (the timeout is only a backstop)
      const outcome = await raw.next('suback', 120_000).then(
        () => 'SUBACK',
        () => 'closed',
      )
      t.equal(outcome, 'closed', 'no SUBACK for the packet that went over the limit: the connection was closed')

      const granted = await sys.events('SubscriptionGranted')
      t.ok(granted.length <= 50, `at most the limit's filters were granted and recorded (${granted.length})`)
      const limited = (await sys.events('RateLimitExceeded')).map(
        (e) => e.data as { limit: string; window: string; deviceId: string; refusals: number },
      )
      t.match(limited[0], { limit: 'subscribe-device', window: '50/minute', deviceId: device.deviceId })
      t.ok(limited.length <= 2, 'the refusals are folded into at most two events')
      t.match((await sys.events('DeviceDisconnected')).at(-1)!.data, {
        deviceId: device.deviceId,
        reason: 'rate-limited',
      })

      // denied filters are events too: another toy's topics count the same
      const other = await sys.enroll(uniqueId('snoop'))
      const snoop = await rawConnect(sys.port, other, other.caPem)
      snoop.send(filterFlood('toys/victim/', 2000))
      t.equal(
        await snoop.next('suback', 120_000).then(
          () => 'SUBACK',
          () => 'closed',
        ),
        'closed',
      )
      const denied = await sys.events('SubscriptionDenied')
      t.ok(denied.length > 0 && denied.length <= 50, `at most the limit's denials were recorded (${denied.length})`)
    },
  )

t.test('a connection holds at most KENNEL_MQTT_MAX_SUBSCRIPTIONS filters; an unsubscribe makes room', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_MQTT_MAX_SUBSCRIPTIONS: '3' })
  const device = await sys.enroll(uniqueId('toy'))
  const client = await sys.connect(device)
  const p = `toys/${device.deviceId}/`
  t.same(
    await subscribeCodes(client, [`${p}a`, `${p}b`, `${p}c`, `${p}d`]),
    [1, 1, 1, 128],
    'the fourth filter is refused',
  )
  t.same(await subscribeCodes(client, [`${p}a`]), [1], 'a filter already held can be subscribed again')
  t.match((await sys.events('SubscriptionDenied')).at(-1)!.data, {
    filter: `${p}d`,
    reason: 'more than 3 subscriptions',
  })
  await client.unsubscribeAsync(`${p}b`)
  t.same(await subscribeCodes(client, [`${p}d`]), [1], 'after an unsubscribe there is room again')
  t.ok(client.connected, 'refusals over the cap keep the connection')
})

t.test('the filters a persistent session restores on reconnect are not counted against the limit', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_MQTT_SUBSCRIBE_LIMITS: '2/minute' })
  const device = await sys.enroll(uniqueId('sleepy'))
  const p = `toys/${device.deviceId}/`
  const first = await sys.connect(device, { clean: false })
  t.same(await subscribeCodes(first, [`${p}inbox/#`, `${p}config`]), [1, 1], 'the limit is used up')
  await first.endAsync()
  for (let i = 0; i < 2; i++) {
    const again = await sys.connect(device, { clean: false })
    const message = nextMessage(again)
    await sys.broker.publishToDevice(device.deviceId, 'hello', `restored ${i}`, { qos: 0 })
    t.equal(
      (await message).payload.toString(),
      `restored ${i}`,
      `reconnect ${i + 1}: the restored subscription delivers`,
    )
    t.ok(again.connected)
    await again.endAsync()
  }
  t.equal((await sys.events('RateLimitExceeded')).length, 0, 'nothing was refused')
})
