import t from 'tap'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { connectPacket, rawTls } from './raw-client.ts'
import { startBrokerSystem, uniqueId } from './system.ts'

// [MQTT-3.1.4]: a client may send packets right behind its CONNECT, without waiting for the
// CONNACK. Aedes can hand such a packet to the broker's hooks before the CONNECT is decided (a
// PUBLISH larger than one TLS record is read after the CONNECT's record); refused for want of a
// session, it closed the connection before the CONNACK: a toy pipelining a 60 KB PUBLISH was
// disconnected with no CONNACK at all, and a pipelined SUBSCRIBE got 0x80.
//
// A refused CONNECT is answered with its CONNACK return code [MQTT-3.2.2-5] also when the toy did
// not wait for the CONNACK before sending more (a PUBLISH behind its CONNECT, as a pipelining
// client does). Aedes destroyed the socket right after writing the CONNACK; the unread PUBLISH
// made the kernel reset the connection, which discarded the CONNACK before it left: the toy saw
// a reset, never the code that says why (5 for a will on another toy's topic, 2 for a client id
// other than its certificate's, 3 while the event store is away).

const publish = (topic: string, qos: 0 | 1 = 0): Buffer =>
  mqttPacket.generate({
    cmd: 'publish',
    topic,
    payload: Buffer.alloc(60_000, 1),
    qos,
    messageId: qos ? 11 : undefined,
    retain: false,
    dup: false,
  } as Packet)

t.test('a refused CONNECT followed at once by a PUBLISH still gets its CONNACK code', async (t) => {
  const sys = await startBrokerSystem(t)
  const device = await sys.enroll(uniqueId('eager'))
  const cases: Array<[string, Buffer, number]> = [
    [
      "a will on another toy's topic",
      connectPacket(device.deviceId, {
        will: { topic: 'toys/someone-else/inbox/x', payload: Buffer.from('w'), qos: 0, retain: false },
      }),
      5,
    ],
    ["a client id other than its certificate's", connectPacket('someone-else'), 2],
  ]
  for (const [what, connect, code] of cases) {
    const raw = await rawTls(sys.port, device, device.caPem)
    // 1.2 MB behind the CONNECT: the broker has not read all of it when it closes
    raw.socket.write(Buffer.concat([connect, ...Array(20).fill(publish(`toys/${device.deviceId}/t`))]))
    const connack = await raw.next('connack').then(
      (p) => (p as Packet & { returnCode: number }).returnCode,
      (err: Error) => err.message,
    )
    t.equal(connack, code, `${what}: CONNACK ${code}`)
    await raw.closed
  }
})

t.test('a PUBLISH and a SUBSCRIBE sent right behind an accepted CONNECT are handled once it is', async (t) => {
  const sys = await startBrokerSystem(t)
  const device = await sys.enroll(uniqueId('eager'))
  const topic = `toys/${device.deviceId}/t`
  const raw = await rawTls(sys.port, device, device.caPem)
  raw.socket.write(
    Buffer.concat([
      connectPacket(device.deviceId),
      publish(topic, 1),
      mqttPacket.generate({
        cmd: 'subscribe',
        messageId: 12,
        subscriptions: [{ topic: `toys/${device.deviceId}/#`, qos: 1 }],
      } as Packet),
    ]),
  )
  t.match(await raw.next('connack'), { returnCode: 0 })
  t.match(await raw.next('puback'), { messageId: 11 }, 'the pipelined PUBLISH is acknowledged')
  t.match(await raw.next('suback'), { messageId: 12, granted: [1] }, 'the pipelined SUBSCRIBE is granted')
  t.notOk(raw.socket.destroyed, 'the connection stays open')
  t.match(
    (await sys.events('PublishAccepted')).map((e) => e.data),
    [{ topic, qos: 1, bytes: 60_000 }],
  )
  raw.send({ cmd: 'disconnect' } as Packet)
  await raw.closed
})

t.test('a large SUBSCRIBE sent right behind the CONNECT is granted', async (t) => {
  const sys = await startBrokerSystem(t)
  const device = await sys.enroll(uniqueId('eager'))
  // 20 filters of about 1,000 bytes: more than one TLS record
  const filters = Array.from({ length: 20 }, (_, i) => `toys/${device.deviceId}/${String(i).padStart(990, 'x')}`)
  const raw = await rawTls(sys.port, device, device.caPem)
  raw.socket.write(
    Buffer.concat([
      connectPacket(device.deviceId),
      mqttPacket.generate({
        cmd: 'subscribe',
        messageId: 3,
        subscriptions: filters.map((topic) => ({ topic, qos: 1 })),
      } as Packet),
    ]),
  )
  t.match(await raw.next('connack'), { returnCode: 0 })
  t.same(
    ((await raw.next('suback')) as Packet & { granted: number[] }).granted,
    Array(20).fill(1),
    'every filter granted',
  )
  raw.send({ cmd: 'disconnect' } as Packet)
  await raw.closed
})
