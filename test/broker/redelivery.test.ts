import t from 'tap'
import type { IPublishPacket, Packet } from 'mqtt-packet'
import { type RawClient, rawConnect } from './raw-client.ts'
import { redisSkip, startBrokerSystem, uniqueId } from './system.ts'

// [MQTT-3.3.1-1]: a PUBLISH the broker sends again because the toy never acknowledged it carries
// DUP=1 and the same packet identifier [MQTT-4.4.0-1]; a message queued while the toy was offline
// is a first delivery and carries DUP=0. Strict clients drop or loop on a re-sent DUP=0 message.
// Both session stores: Aedes' in-memory one, and Redis (cluster mode).

const redisUrl = process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const stores: Array<{ name: string; env: Record<string, string>; skip: false | string }> = [
  { name: 'in memory', env: {}, skip: false },
  { name: 'in Redis', env: { KENNEL_REDIS_URL: redisUrl }, skip: await redisSkip(redisUrl) },
]

const publishes = (raw: RawClient): IPublishPacket[] =>
  raw.received.filter((p): p is IPublishPacket => p.cmd === 'publish')

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function leave(raw: RawClient): Promise<void> {
  raw.send({ cmd: 'disconnect' })
  await raw.closed
}

for (const store of stores) {
  t.test(
    `sessions ${store.name}: an unacknowledged QoS 1 message is sent again with DUP=1 and its packet identifier when the session resumes`,
    { skip: store.skip },
    async (t) => {
      const sys = await startBrokerSystem(t, store.env)
      const device = await sys.enroll(uniqueId('forgetful'))
      const session = { clean: false, keepalive: 60 }
      const first = await rawConnect(sys.port, device, sys.ca.trustedPem, session)
      first.send({
        cmd: 'subscribe',
        messageId: 1,
        subscriptions: [{ topic: `toys/${device.deviceId}/inbox/#`, qos: 1 }],
      })
      await first.next('suback')
      await sys.broker.publishToDevice(device.deviceId, 'wake', 'sent once', { qos: 1 })
      await until(() => publishes(first).length === 1, 'the first delivery')
      const sent = publishes(first)[0]!
      t.match(sent, { qos: 1, dup: false }, 'first delivery: DUP=0')
      // no PUBACK: the toy leaves with the message unacknowledged, and one more is queued meanwhile
      await leave(first)
      await sys.broker.publishToDevice(device.deviceId, 'later', 'queued offline', { qos: 1 })

      const second = await rawConnect(sys.port, device, sys.ca.trustedPem, session)
      t.match(await second.next('connack'), { sessionPresent: true })
      await until(() => publishes(second).length === 2, 'both stored messages')
      const [again, queued] = publishes(second)
      t.match(
        again,
        { topic: `toys/${device.deviceId}/inbox/wake`, qos: 1, dup: true, messageId: sent.messageId },
        're-sent: DUP=1, same packet identifier',
      )
      t.equal(again!.payload.toString(), 'sent once')
      t.match(
        queued,
        { topic: `toys/${device.deviceId}/inbox/later`, qos: 1, dup: false },
        'queued while offline, sent for the first time: DUP=0',
      )
      for (const p of publishes(second)) second.send({ cmd: 'puback', messageId: p.messageId! })
      await leave(second)

      const third = await rawConnect(sys.port, device, sys.ca.trustedPem, session)
      third.send({ cmd: 'pingreq' })
      await third.next('pingresp')
      t.same(publishes(third), [], 'acknowledged messages are not sent again')
      await leave(third)
    },
  )

  t.test(
    `sessions ${store.name}: an unacknowledged QoS 2 message is sent again with DUP=1 when the session resumes`,
    { skip: store.skip },
    async (t) => {
      const sys = await startBrokerSystem(t, store.env)
      const device = await sys.enroll(uniqueId('echo'))
      const topic = `toys/${device.deviceId}/echo`
      const session = { clean: false, keepalive: 60 }
      const first = await rawConnect(sys.port, device, sys.ca.trustedPem, session)
      first.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 2 }] })
      await first.next('suback')
      // the toy publishes to its own topic (QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP) and receives it back
      first.send({
        cmd: 'publish',
        topic,
        payload: Buffer.from('to myself'),
        qos: 2,
        messageId: 2,
        retain: false,
        dup: false,
      })
      await first.next('pubrec')
      first.send({ cmd: 'pubrel', messageId: 2 })
      await first.next('pubcomp')
      await until(() => publishes(first).length === 1, 'the first delivery')
      const sent = publishes(first)[0]!
      t.match(sent, { qos: 2, dup: false })
      await leave(first) // no PUBREC for it

      const second = await rawConnect(sys.port, device, sys.ca.trustedPem, session)
      await until(() => publishes(second).length === 1, 'the stored message')
      t.match(
        publishes(second)[0],
        { topic, qos: 2, dup: true, messageId: sent.messageId },
        're-sent: DUP=1, same packet identifier',
      )
      second.send({ cmd: 'pubrec', messageId: sent.messageId! } as Packet)
      await second.next('pubrel')
      await leave(second)
    },
  )
}
