import t from 'tap'
import type { Packet } from 'mqtt-packet'
import { type RawClient, rawConnect } from './raw-client.ts'
import { redisSkip, startBrokerSystem, uniqueId } from './system.ts'

// QoS 2 is exactly once [MQTT-4.3.3]: a PUBLISH the toy sends again with DUP=1 before it has
// released the first (PUBREL) is the same message. Aedes answers the re-send with a second
// PUBREC and routes the message once; the broker must record it once too: two PublishAccepted
// events for one message would tell an auditor the toy sent it twice.

const publish = (topic: string, messageId: number, dup: boolean): Packet => ({
  cmd: 'publish',
  topic,
  payload: Buffer.from('exactly once'),
  qos: 2,
  messageId,
  dup,
  retain: false,
})

/** the count-th packet of this command, waiting for it */
async function nth(raw: RawClient, cmd: Packet['cmd'], count: number): Promise<void> {
  while (raw.received.filter((p) => p.cmd === cmd).length < count) {
    await new Promise<void>((resolve) => raw.socket.once('data', () => setImmediate(resolve)))
  }
}

t.test('a QoS 2 PUBLISH sent again with DUP=1 before PUBREL is recorded and delivered once', async (t) => {
  const sys = await startBrokerSystem(t)
  const device = await sys.enroll(uniqueId('toy'))
  const topic = `toys/${device.deviceId}/q2`
  // a toy holds one connection: the delivery is observed on its own subscription
  const raw = await rawConnect(sys.port, device, device.caPem)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] } as Packet)
  await raw.next('suback')
  raw.send(publish(topic, 9, false))
  await nth(raw, 'pubrec', 1)
  raw.send(publish(topic, 9, true))
  await nth(raw, 'pubrec', 2)
  raw.send({ cmd: 'pubrel', messageId: 9 } as Packet)
  await raw.next('pubcomp')

  const accepted = (await sys.events('PublishAccepted')).filter((e) => (e.data as { topic: string }).topic === topic)
  t.equal(accepted.length, 1, 'one PublishAccepted for one QoS 2 message')
  t.equal(raw.received.filter((p) => p.cmd === 'publish').length, 1, 'delivered once')
})

const redisUrl = process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const stores: Array<{ name: string; env: Record<string, string>; skip: false | string }> = [
  { name: 'in memory', env: {}, skip: false },
  { name: 'in Redis', env: { KENNEL_REDIS_URL: redisUrl }, skip: await redisSkip(redisUrl) },
]

for (const store of stores)
  t.test(
    `sessions ${store.name}: a QoS 2 PUBLISH re-sent with DUP=1 after a reconnect (persistent session) is recorded once`,
    { skip: store.skip },
    async (t) => {
      const sys = await startBrokerSystem(t, store.env)
      const device = await sys.enroll(uniqueId('toy'))
      const topic = `toys/${device.deviceId}/q2`
      const first = await rawConnect(sys.port, device, device.caPem, { clean: false })
      first.send(publish(topic, 7, false))
      await first.next('pubrec')
      // the connection is lost before the toy sends PUBREL
      first.socket.destroy()
      await first.closed

      const second = await rawConnect(sys.port, device, device.caPem, { clean: false })
      second.send(publish(topic, 7, true))
      await second.next('pubrec')
      second.send({ cmd: 'pubrel', messageId: 7 } as Packet)
      await second.next('pubcomp')

      const accepted = (await sys.events('PublishAccepted')).filter(
        (e) => (e.data as { topic: string }).topic === topic,
      )
      t.equal(accepted.length, 1, 'one PublishAccepted for one QoS 2 message')
    },
  )
