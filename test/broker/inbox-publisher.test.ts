import t from 'tap'
import { createInboxPublisher } from '../../broker/inbox-publisher.ts'
import { createLogger } from '../../infra/log.ts'
import { nextMessage, redisSkip, startBrokerSystem, uniqueId } from './system.ts'

// An API node without a broker of its own (KENNEL_ROLES=api) reaches toys through the cluster's
// Redis: the message reaches the toy on whichever broker holds its session.

const redisUrl = process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

t.test(
  'a publisher with no listener reaches a toy connected to a broker of the cluster',
  { skip: await redisSkip(redisUrl) },
  async (t) => {
    const sys = await startBrokerSystem(t, { KENNEL_REDIS_URL: redisUrl })
    const toy = await sys.enroll(uniqueId('toy-inbox'))
    const client = await sys.connect(toy)
    await client.subscribeAsync(`toys/${toy.deviceId}/inbox/#`, { qos: 1 })
    const publisher = await createInboxPublisher({ config: sys.config, store: sys.store, log: createLogger('silent') })
    t.teardown(() => publisher.close())
    const received = nextMessage(client)
    await publisher.publishToDevice(toy.deviceId, 'recordings', JSON.stringify({ recordingId: 'rec-1' }))
    const m = await received
    t.equal(m.topic, `toys/${toy.deviceId}/inbox/recordings`)
    t.same(JSON.parse(m.payload.toString()), { recordingId: 'rec-1' })
    const recorded = await sys.store.readAll({ filter: { types: ['InboxMessagePublished'] } })
    t.match(
      recorded.at(-1),
      { stream: `mqtt-${toy.deviceId}`, data: { deviceId: toy.deviceId, topic: m.topic, qos: 1 } },
      'the message is on record',
    )
  },
)

t.test("the publisher only writes to a toy's inbox", { skip: await redisSkip(redisUrl) }, async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_REDIS_URL: redisUrl })
  const publisher = await createInboxPublisher({ config: sys.config, store: sys.store, log: createLogger('silent') })
  t.teardown(() => publisher.close())
  await t.rejects(publisher.publishToDevice('toy-1', 'a/#', '{}'), { code: 'KENNEL_ERR_TOPIC_DENIED' })
  await t.rejects(publisher.publishToDevice('toy-1', '+', '{}'), { code: 'KENNEL_ERR_TOPIC_DENIED' })
  await t.rejects(publisher.publishToDevice('toy-1', 'big', Buffer.alloc(sys.config.maxPayloadBytes + 1)), {
    code: 'KENNEL_ERR_PAYLOAD_TOO_LARGE',
  })
})
