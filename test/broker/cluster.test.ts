import { randomUUID } from 'node:crypto'
import t from 'tap'
import { Redis } from 'ioredis'
import { nextMessage, startBrokerSystem, uniqueId } from './system.ts'

const redisUrl = process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

async function reachable(url: string): Promise<boolean> {
  const r = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null })
  try {
    await r.connect()
    return (await r.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    r.disconnect()
  }
}

const skip = (await reachable(redisUrl)) ? false : `Redis not reachable at ${redisUrl} (set KENNEL_TEST_REDIS_URL)`

t.test('two brokers sharing Redis: cross-broker delivery and cross-broker kick', { skip }, async (t) => {
  const prefix = `kennel-test-${randomUUID()}:`
  t.teardown(async () => {
    const r = new Redis(redisUrl)
    for (const pattern of [`${prefix}*`]) {
      const keys = await r.keys(pattern)
      if (keys.length > 0) await r.del(...keys)
    }
    r.disconnect()
  })
  const env = { KENNEL_REDIS_URL: redisUrl, KENNEL_TEST_KEY_PREFIX: prefix }
  const sys = await startBrokerSystem(t, env)
  const second = await sys.startBroker(env)
  const id = uniqueId('roamer')
  const device = await sys.enroll(id)

  const client = await sys.connect(device)
  await client.subscribeAsync(`toys/${id}/#`, { qos: 1 })
  const message = nextMessage(client)
  await second.broker.publishToDevice(id, 'hello', 'from the other broker')
  t.equal((await message).payload.toString(), 'from the other broker', 'a message published on broker B reaches a toy on broker A')

  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  await second.broker.kick(id, 'test')
  await closed
  t.pass('broker B closed the session held by broker A')
  t.match((await sys.events('DeviceDisconnected')).at(-1)?.data, { deviceId: id, reason: 'revoked' })
})
