import t from 'tap'
import mqttPacket from 'mqtt-packet'
import { rateLimitExceededData } from '../../infra/net/events.ts'
import { rawConnect } from './raw-client.ts'
import { startBrokerSystem, uniqueId } from './system.ts'

t.test('the N+1-th connect of a toy in the window gets CONNACK 3 and a RateLimitExceeded event', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_MQTT_CONNECT_LIMITS: '3/minute' })
  const device = await sys.enroll(uniqueId('flappy'))
  for (let i = 0; i < 3; i++) await (await sys.connect(device)).endAsync()
  const err = await sys.connect(device).then(
    () => undefined,
    (e: { code?: number }) => e,
  )
  t.equal(err?.code, 3, 'server unavailable: try later')
  const e = (await sys.events('RateLimitExceeded')).at(-1)!
  t.match(e.data, {
    listener: 'mqtt',
    limit: 'connect-device',
    window: '3/minute',
    deviceId: device.deviceId,
    serial: device.serial,
    ip: '127.0.0.1',
    retryAfterSeconds: Number,
    refusals: 1,
  })
  t.same(
    e.data,
    rateLimitExceededData(e.data),
    'written in the one shape the API writes too (infra/net/events.ts), nothing to upcast',
  )
  t.equal(e.stream, `mqtt-${device.deviceId}`)
  const other = await sys.enroll(uniqueId('calm'))
  await (await sys.connect(other)).endAsync()
  t.pass('another toy still connects')
})

t.test('connects per source address are limited too', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_MQTT_CONNECT_IP_LIMITS: '2/minute' })
  const a = await sys.enroll(uniqueId('a'))
  const b = await sys.enroll(uniqueId('b'))
  await (await sys.connect(a)).endAsync()
  await (await sys.connect(b)).endAsync()
  const err = await sys.connect(a).then(
    () => undefined,
    (e: { code?: number }) => e,
  )
  t.equal(err?.code, 3)
  t.match((await sys.events('RateLimitExceeded')).at(-1)!.data, {
    listener: 'mqtt',
    limit: 'connect-ip',
    window: '2/minute',
    ip: '127.0.0.1',
    deviceId: a.deviceId,
  })
})

t.test('a toy publishing over its limit is disconnected and the excess is evented', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_MQTT_PUBLISH_LIMITS: '5/minute' })
  const device = await sys.enroll(uniqueId('chatty'))
  const client = await sys.connect(device)
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  for (let i = 0; i < 5; i++) await client.publishAsync(`toys/${device.deviceId}/n`, String(i), { qos: 1 })
  client.publish(`toys/${device.deviceId}/n`, 'one too many', { qos: 1 })
  await closed
  t.match((await sys.events('RateLimitExceeded')).at(-1)!.data, { limit: 'publish-device', deviceId: device.deviceId })
  t.equal((await sys.events('PublishAccepted')).length, 5)
  t.match((await sys.events('DeviceDisconnected')).at(-1)!.data, { reason: 'rate-limited' })
})

t.test('payload bytes per toy are limited', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_MQTT_BYTE_LIMITS: '1000/minute' })
  const device = await sys.enroll(uniqueId('bulky'))
  const client = await sys.connect(device)
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  await client.publishAsync(`toys/${device.deviceId}/b`, Buffer.alloc(600), { qos: 1 })
  client.publish(`toys/${device.deviceId}/b`, Buffer.alloc(600), { qos: 1 })
  await closed
  t.match((await sys.events('RateLimitExceeded')).at(-1)!.data, { limit: 'bytes-device' })
})

t.test(
  'a burst of publishes over the limit is recorded as a few RateLimitExceeded events that count every refusal',
  async (t) => {
    const sys = await startBrokerSystem(t, { KENNEL_MQTT_PUBLISH_LIMITS: '5/minute' })
    const device = await sys.enroll(uniqueId('bursty'))
    const raw = await rawConnect(sys.port, device, sys.ca.trustedPem)
    // one write: the broker reads the whole burst before the first refusal disconnects the toy
    const burst = Array.from({ length: 300 }, (_, i) =>
      mqttPacket.generate({
        cmd: 'publish',
        topic: `toys/${device.deviceId}/n`,
        payload: Buffer.from(String(i)),
        qos: 0,
        retain: false,
        dup: false,
      }),
    )
    raw.socket.write(Buffer.concat(burst))
    await raw.closed
    const refused =
      (await sys.broker.metrics.rateLimited.get()).values.find((v) => v.labels.limit === 'publish-device')?.value ?? 0
    t.ok(refused > 10, `the burst was refused ${refused} times`)
    const mine = async (): Promise<Array<{ refusals: number; [k: string]: unknown }>> =>
      (await sys.events('RateLimitExceeded'))
        .filter((e) => e.stream === `mqtt-${device.deviceId}`)
        .map((e) => e.data as { refusals: number })
    t.same(
      (await mine()).map((d) => d.refusals),
      [1],
      'the first refusal is on record at once, the rest of the minute is counted',
    )
    await sys.broker.close()
    const events = await mine()
    t.ok(events.length <= 2, `${events.length} events for the minute, not one per refusal`)
    t.equal(
      events.reduce((n, d) => n + d.refusals, 0),
      refused,
      'their refusals add up to every refused publish',
    )
    t.match(events[0], {
      limit: 'publish-device',
      window: '5/minute',
      deviceId: device.deviceId,
      serial: device.serial,
      ip: '127.0.0.1',
      retryAfterSeconds: Number,
    })
    t.equal((await sys.events('PublishAccepted')).length, 5)
  },
)
