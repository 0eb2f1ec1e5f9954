import t from 'tap'
import { nextMessage, startBrokerSystem, uniqueId } from './system.ts'

t.test('a toy connects with its certificate and exchanges messages on its own topics (MQTT.js)', async (t) => {
  const sys = await startBrokerSystem(t)
  const id = uniqueId('toy')
  const device = await sys.enroll(id)
  const client = await sys.connect(device)
  const granted = await client.subscribeAsync(`toys/${id}/#`, { qos: 1 })
  t.equal(granted[0]?.qos, 1, 'subscription granted at QoS 1')
  const received = nextMessage(client)
  await client.publishAsync(`toys/${id}/status`, 'hello', { qos: 1 })
  const { topic, payload } = await received
  t.equal(topic, `toys/${id}/status`)
  t.equal(payload.toString(), 'hello')

  const inbox = nextMessage(client)
  await sys.broker.publishToDevice(id, 'recording', '{"recordingId":"r1"}')
  t.equal((await inbox).topic, `toys/${id}/inbox/recording`, 'the backend reaches the toy through its inbox')

  await client.endAsync()
  const events = await sys.events(
    'DeviceConnected',
    'SubscriptionGranted',
    'PublishAccepted',
    'InboxMessagePublished',
    'DeviceDisconnected',
  )
  const mine = events.filter((e) => e.stream === `mqtt-${id}`)
  t.same(
    mine.map((e) => e.type),
    ['DeviceConnected', 'SubscriptionGranted', 'PublishAccepted', 'InboxMessagePublished', 'DeviceDisconnected'],
  )
  const connected = mine[0]!
  t.equal(connected.metadata.actor, `device:${id}`)
  t.equal(connected.metadata.credential, `cert:${device.serial}`)
  t.equal(connected.metadata.sourceIp, '127.0.0.1')
  t.match(connected.data, { clean: true, protocolVersion: 4 }, "the CONNECT's clean flag and protocol level")
  const accepted = mine.find((e) => e.type === 'PublishAccepted')!
  t.match(accepted.data, {
    topic: `toys/${id}/status`,
    qos: 1,
    bytes: 5,
    sha256: '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
  })
  t.notOk(JSON.stringify(mine).includes('hello'), 'the payload itself is never recorded')
  t.match(mine.at(-1)!.data, { reason: 'client-disconnect' })
  t.equal(sys.broker.connectedClients(), 0)
})
