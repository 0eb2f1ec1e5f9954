import t from 'tap'
import type { Packet } from 'mqtt-packet'
import { rawConnect } from './raw-client.ts'
import { startBrokerSystem, uniqueId } from './system.ts'

// R6 for retained messages: each is kept in the broker's memory (in Redis in a cluster) until
// replaced or cleared. Unbounded, one toy retained 30,000 topics (95 MB, kept after it was
// revoked). A toy holds a retained message on at most KENNEL_MQTT_MAX_RETAINED topics; a retained
// publish to a further one is refused like a denied topic (PublishDenied, the connection closed,
// nothing stored), an empty retained publish clears its topic and frees its place.

const retain = (topic: string, payload: string, messageId: number): Packet =>
  ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, messageId, retain: true, dup: false }) as Packet

t.test('a toy holds retained messages on at most KENNEL_MQTT_MAX_RETAINED topics', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_MQTT_MAX_RETAINED: '3' })
  const device = await sys.enroll(uniqueId('retainer'))
  const topic = (n: number) => `toys/${device.deviceId}/state/${n}`

  const raw = await rawConnect(sys.port, device, device.caPem)
  for (let n = 1; n <= 3; n++) {
    raw.send(retain(topic(n), `v${n}`, n))
    t.match(await raw.next('puback'), { messageId: n }, `retained on topic ${n}: acknowledged`)
    raw.received.splice(0)
  }
  raw.send(retain(topic(1), 'v1 again', 10))
  t.match(await raw.next('puback'), { messageId: 10 }, 'replacing a retained topic it holds is allowed')
  raw.received.splice(0)
  raw.send(retain(topic(4), 'one too many', 11))
  await raw.closed
  t.notOk(
    raw.received.some((p) => p.cmd === 'puback'),
    'a fourth retained topic: no PUBACK, the connection closed',
  )
  const denied = (await sys.events('PublishDenied')).map((e) => e.data as { topic: string; reason: string })
  t.match(denied, [{ topic: topic(4), reason: 'more than 3 topics with a retained message' }])
  t.notOk(
    (await sys.events('PublishAccepted')).some((e) => (e.data as { topic: string }).topic === topic(4)),
    'the refused message is not recorded as accepted',
  )

  // what the broker keeps: a new subscriber receives the retained messages of topics 1-3 only
  const reader = await rawConnect(sys.port, device, device.caPem)
  reader.send({
    cmd: 'subscribe',
    messageId: 1,
    subscriptions: [{ topic: `toys/${device.deviceId}/state/#`, qos: 0 }],
  } as Packet)
  await reader.next('suback')
  const until = async (check: () => boolean) => {
    while (!check() && !reader.socket.destroyed)
      await new Promise<void>((resolve) => {
        reader.socket.once('data', () => setImmediate(resolve))
        void reader.closed.then(() => resolve())
      })
  }
  const publishes = () =>
    reader.received.filter((p): p is Packet & { topic: string; payload: Buffer } => p.cmd === 'publish')
  await until(() => publishes().length >= 3)
  t.same(
    publishes()
      .map((p) => `${p.topic}=${p.payload.toString()}`)
      .sort(),
    [`${topic(1)}=v1 again`, `${topic(2)}=v2`, `${topic(3)}=v3`],
    'the refused fourth topic was never stored',
  )
  // an empty retained message clears topic 2 and frees its place for topic 4
  reader.send(retain(topic(2), '', 20))
  await until(() => reader.received.some((p) => p.cmd === 'puback' && p.messageId === 20))
  reader.send(retain(topic(4), 'now it fits', 21))
  await until(() => reader.received.some((p) => p.cmd === 'puback' && p.messageId === 21))
  t.ok(
    reader.received.some((p) => p.cmd === 'puback' && p.messageId === 21),
    'after clearing one topic, another fits',
  )
  reader.socket.destroy()
})
