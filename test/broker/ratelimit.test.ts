import t from 'tap'
import { startBrokerSystem, uniqueId } from './system.ts'

t.test('the N+1-th connect of a toy in the window gets CONNACK 3 and a RateLimitExceeded event', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_MQTT_CONNECT_LIMITS: '3/minute' })
  const device = await sys.enroll(uniqueId('flappy'))
  for (let i = 0; i < 3; i++) await (await sys.connect(device)).endAsync()
  const err = await sys.connect(device).then(() => undefined, (e: { code?: number }) => e)
  t.equal(err?.code, 3, 'server unavailable: try later')
  const e = (await sys.events('RateLimitExceeded')).at(-1)!
  t.match(e.data, { limit: 'connect-device', key: device.deviceId, deviceId: device.deviceId, retryAfterMs: Number })
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
  const err = await sys.connect(a).then(() => undefined, (e: { code?: number }) => e)
  t.equal(err?.code, 3)
  t.match((await sys.events('RateLimitExceeded')).at(-1)!.data, { limit: 'connect-ip', key: '127.0.0.1' })
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
