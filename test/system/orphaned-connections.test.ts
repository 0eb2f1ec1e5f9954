import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { closeOrphanedConnections } from '../../broker/orphaned.ts'
import { loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { enrollToys, kennelEnv, PublishingToy, startKennelChild, until } from './kennel-child.ts'

// R19: every DeviceConnected ends with exactly one DeviceDisconnected of its connectionId. A
// broker killed with -9 closes nothing on record: the connections it had open stayed open in
// the log, and the ops console showed the toys connected, for ever (a toy that never came back
// was "connected" after three restarts). On the embedded store the restarted node records their
// end (reason `broker-crashed`) before it listens.

type Connection = { connectionId: string; reason?: string }
const data = (e: RecordedEvent): Connection => e.data as Connection

t.test(
  'kill -9 with toys connected: the restarted node records the end of each connection the dead one left open',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-orphans-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const env = kennelEnv(dir)
    const config = loadConfig(env)
    const toys = await enrollToys(config, ['toy-o1', 'toy-o2'])

    const first = await startKennelChild(t, env)
    const load = toys.map((toy) => new PublishingToy(toy, first.mqttPort, { window: 4 }))
    await until('both toys publishing', () => load.every((l) => l.acked.size > 0))
    await first.kill9()
    await Promise.all(load.map((l) => l.stop()))

    // restarted twice: the second start finds nothing left to close
    for (let life = 0; life < 2; life++) {
      const again = await startKennelChild(t, env)
      t.equal(await again.stop(), 0, `restart ${life + 1} stopped cleanly`)
    }

    const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
    t.teardown(() => store.close())
    const events = await store.readAll({ filter: { types: ['DeviceConnected', 'DeviceDisconnected'] } })
    const connected = events.filter((e) => e.type === 'DeviceConnected').map((e) => data(e).connectionId)
    t.equal(connected.length, 2, 'one connection per toy, both in the killed process')
    for (const id of connected) {
      const ends = events.filter((e) => e.type === 'DeviceDisconnected' && data(e).connectionId === id)
      t.same(
        ends.map((e) => data(e).reason),
        ['broker-crashed'],
        `connection ${id} has exactly one end, recorded as broker-crashed`,
      )
      t.match(ends[0]?.metadata, { actor: 'system:broker', credential: /^cert:/ })
    }
  },
)

t.test('closeOrphanedConnections closes only the connections without an end, once', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-orphans-unit-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = await openEventStore(`sqlite:${path.join(dir, 'events.sqlite')}`, { environment: 'test' })
  t.teardown(() => store.close())
  const connect = (deviceId: string, connectionId: string) =>
    store.append(`mqtt-${deviceId}`, [
      {
        type: 'DeviceConnected',
        data: { deviceId, serial: 'ab', ip: '192.0.2.1', clean: true, protocolVersion: 4, connectionId },
      },
    ])
  const disconnect = (deviceId: string, connectionId: string) =>
    store.append(`mqtt-${deviceId}`, [
      { type: 'DeviceDisconnected', data: { deviceId, reason: 'client-disconnect', ip: '192.0.2.1', connectionId } },
    ])
  await connect('toy-a', 'c1')
  await connect('toy-b', 'c2')
  await disconnect('toy-a', 'c1')
  await connect('toy-a', 'c3')
  t.equal(await closeOrphanedConnections(store), 2)
  t.equal(await closeOrphanedConnections(store), 0, 'nothing left open')
  const ends = (await store.readAll({ filter: { types: ['DeviceDisconnected'] } })).map((e) => [
    e.stream,
    data(e).connectionId,
    data(e).reason,
  ])
  t.same(ends, [
    ['mqtt-toy-a', 'c1', 'client-disconnect'],
    ['mqtt-toy-b', 'c2', 'broker-crashed'],
    ['mqtt-toy-a', 'c3', 'broker-crashed'],
  ])
})
