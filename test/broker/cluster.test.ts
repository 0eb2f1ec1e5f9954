import { fork, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import path from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { Redis } from 'ioredis'
import { revokeDevice } from '../../devices/revoke.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'
import { type DeviceFiles, nextMessage, redisSkip, startBrokerSystem, uniqueId } from './system.ts'

// Two broker processes (cluster-node.ts) sharing the local Redis and the data dir (one SQLite
// event store), with toys connected to the first. The test's own broker is not part of it.

const redisUrl = process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const nodeScript = path.resolve(import.meta.dirname, 'cluster-node.ts')

interface ClusterNode {
  port: number
  /** resolves with the final answer; `onSubscribed` runs once a nextMessage subscription is active */
  call(op: string, args?: Record<string, unknown>, onSubscribed?: () => void): Promise<unknown>
}

let seq = 0

async function startNode(t: { teardown(fn: () => unknown): void }, env: Record<string, string>): Promise<ClusterNode> {
  const child: ChildProcess = fork(nodeScript, [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  })
  t.teardown(async () => {
    if (child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.send({ seq: -1, op: 'close' })
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))])
    child.kill()
  })
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`broker process exited with ${code} before listening`)))
    createInterface({ input: child.stdout! }).once('line', (line) =>
      resolve((JSON.parse(line) as { port: number }).port),
    )
  })
  return {
    port,
    call(op, args = {}, onSubscribed) {
      const id = seq++
      return new Promise((resolve, reject) => {
        const on = (m: { seq: number; ok?: boolean; value?: unknown; error?: string; subscribed?: boolean }): void => {
          if (m.seq !== id) return
          if (m.subscribed) return onSubscribed?.()
          child.off('message', on)
          if (m.error !== undefined) reject(new Error(m.error))
          else resolve(m.value)
        }
        child.on('message', on)
        child.send({ ...args, seq: id, op })
      })
    },
  }
}

const skip = await redisSkip(redisUrl)

t.test('two broker processes sharing Redis and the event store', { skip }, async (t) => {
  const prefix = `kennel-test-${randomUUID()}:`
  t.teardown(async () => {
    const r = new Redis(redisUrl)
    const keys = await r.keys(`${prefix}*`)
    if (keys.length > 0) await r.del(...keys)
    r.disconnect()
  })
  // the test's system provides the data dir, the CA, enrolment and the store to read events from
  const sys = await startBrokerSystem(t)
  const env = {
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: sys.dir,
    KENNEL_MQTT_PORT: '0',
    KENNEL_LOG_LEVEL: 'silent',
    KENNEL_REDIS_URL: redisUrl,
    KENNEL_TEST_KEY_PREFIX: prefix,
  }
  const [a, b] = await Promise.all([startNode(t, env), startNode(t, env)])
  // enrolled, and known to both brokers' device registries
  const enroll = async (id: string): Promise<DeviceFiles> => {
    const device = await sys.enroll(id)
    const position = await sys.store.headPosition()
    await Promise.all([a, b].map((n) => n.call('waitFor', { position })))
    return device
  }

  t.test('a message published on broker B reaches a toy on broker A', async (t) => {
    const id = uniqueId('roamer')
    const toy = await sys.connect(await enroll(id), { port: a.port })
    await toy.subscribeAsync(`toys/${id}/#`, { qos: 1 })
    const message = nextMessage(toy, 10_000)
    await b.call('publishToDevice', { deviceId: id, subtopic: 'hello', payload: 'from the other broker' })
    const { topic, payload } = await message
    t.equal(topic, `toys/${id}/inbox/hello`)
    t.equal(payload.toString(), 'from the other broker')
  })

  t.test('a toy publishing on broker B reaches the backend subscribed on broker A', async (t) => {
    const id = uniqueId('chatty')
    const toy = await sys.connect(await enroll(id), { port: b.port })
    let subscribed!: () => void
    const ready = new Promise<void>((resolve) => (subscribed = resolve))
    const seen = a.call('nextMessage', { topic: `toys/${id}/status` }, subscribed)
    await ready
    await toy.publishAsync(`toys/${id}/status`, 'awake', { qos: 1 })
    t.equal(await seen, 'awake')
  })

  t.test('a kick on broker B closes the session held by broker A', async (t) => {
    const id = uniqueId('kicked')
    const toy = await sys.connect(await enroll(id), { port: a.port })
    const closed = new Promise<void>((resolve) => toy.once('close', () => resolve()))
    await b.call('kick', { deviceId: id })
    await closed
    t.pass('the session on broker A was closed')
  })

  t.test('a toy connecting to broker B takes its session on broker A over, recorded as taken-over', async (t) => {
    const id = uniqueId('roaming')
    const device = await enroll(id)
    const onA = await sys.connect(device, { port: a.port })
    const closedA = new Promise<void>((resolve) => onA.once('close', () => resolve()))
    const onB = await sys.connect(device, { port: b.port })
    await closedA
    await waitFor(async () => (await disconnects(sys.store, [id])).length === 1)
    t.same(await disconnects(sys.store, [id]), ['taken-over'], 'broker A recorded why it closed the session')
    t.ok(onB.connected, 'the session on broker B is live')
  })

  t.test('a revocation appended to the shared store closes the session on whichever broker holds it', async (t) => {
    const onA = uniqueId('stolen-a')
    const onB = uniqueId('stolen-b')
    const toyA = await sys.connect(await enroll(onA), { port: a.port })
    const toyB = await sys.connect(await enroll(onB), { port: b.port })
    const closedA = new Promise<void>((resolve) => toyA.once('close', () => resolve()))
    const closedB = new Promise<void>((resolve) => toyB.once('close', () => resolve()))
    const deps = { store: sys.store, actor: 'cli:test', docs: sys.projections.docs }
    await revokeDevice(deps, onA, 'reported stolen')
    await revokeDevice(deps, onB, 'reported stolen')
    await Promise.all([closedA, closedB])
    t.pass('both sessions were closed')
    const err = await sys.connect(await enroll(uniqueId('bystander')), { port: b.port }).then(
      (c) => (c.end(true), undefined),
      (e: Error) => e,
    )
    t.equal(err, undefined, 'other toys still connect')
    await waitFor(async () => (await disconnects(sys.store, [onA, onB])).length === 2)
    t.same(
      await disconnects(sys.store, [onA, onB]),
      ['revoked', 'revoked'],
      'each broker recorded why it closed the session',
    )
  })
})

async function disconnects(store: EventStore, ids: string[]): Promise<string[]> {
  const events = await store.readAll({ filter: { types: ['DeviceDisconnected'] } })
  return events
    .filter((e) => ids.some((id) => e.stream === `mqtt-${id}`))
    .map((e) => String((e.data as { reason?: unknown }).reason))
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met within the timeout')
    await new Promise((r) => setTimeout(r, 50))
  }
}
