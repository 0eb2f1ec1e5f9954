import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { threadId } from 'node:worker_threads'
import t, { type Test } from 'tap'
import { startKennel } from '../../bin/start.ts'
import { loadDeviceCa } from '../../devices/ca.ts'
import { enrollDevice } from '../../devices/enroll.ts'
import { loadConfig } from '../../infra/config.ts'
import { createLogger } from '../../infra/log.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { request } from '../api/helpers.ts'
import { redisSkip } from '../broker/system.ts'

// KENNEL_ROLES composes a node of the parts of its roles only (bin/start.ts): a broker node serves
// MQTT and nothing else, an API node HTTPS, a projector node neither, and only a projector
// keeps persistent read models.

const redisUrl = process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

function node(t: Test, roles: string, env: Record<string, string> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-roles-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const config = loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_MQTT_PORT: '0',
    KENNEL_API_PORT: '0',
    KENNEL_METRICS_PORT: '0',
    KENNEL_ROLES: roles,
    ...env,
  })
  return {
    dir,
    config,
    start: async () => {
      const kennel = await startKennel(config, createLogger('silent'))
      t.teardown(() => kennel.stop())
      return kennel
    },
  }
}

const handshake = (port: number, ca: string): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca })
    socket.once('secureConnect', () => (socket.destroy(), resolve(true)))
    socket.once('error', () => resolve(false))
  })

t.test('a broker-only node listens for MQTT, has no API listener and projects nothing', async (t) => {
  const { dir, start } = node(t, 'broker')
  const kennel = await start()
  t.ok(kennel.broker, 'the broker runs')
  t.type(kennel.ports.mqtt, 'number')
  t.equal(kennel.ports.api, undefined, 'no API listener')
  t.equal(kennel.projections, undefined, 'no projector')
  t.ok(await handshake(kennel.ports.mqtt!, kennel.ca!.trustedPem), 'the MQTT listener completes a TLS handshake')
  t.notOk(fs.existsSync(path.join(dir, 'readmodels.sqlite')), 'no persistent read model is opened')
})

t.test('a projector-only node listens for neither MQTT nor HTTPS, and still projects', async (t) => {
  const { dir, config, start } = node(t, 'projector')
  const kennel = await start()
  t.equal(kennel.ports.mqtt, undefined, 'no MQTT listener')
  t.equal(kennel.ports.api, undefined, 'no API listener')
  t.equal(kennel.broker, undefined)
  t.equal(kennel.ca, undefined, 'not even the device CA is loaded')
  t.type(kennel.ports.metrics, 'number', '/metrics is served on every node')
  // another process (the CLI) enrols a toy in the store this node follows
  await enrollDevice(
    { store: kennel.store, ca: await loadDeviceCa(config), config, actor: 'cli:test' },
    'toy-projected',
  )
  await kennel.projections!.waitFor(await kennel.store.headPosition(), 10_000)
  const stored = openSqliteReadModels(path.join(dir, 'readmodels.sqlite'))
  t.teardown(() => stored.close())
  const devices = await stored.load('devices')
  t.match(
    devices?.docs.find(([c, id]) => c === 'devices' && id === 'toy-projected'),
    ['devices', 'toy-projected', { status: 'active' }],
    'the devices read model holds the toy',
  )
})

t.test(
  'an API-only node answers HTTPS, has no MQTT listener and no projector',
  { skip: await redisSkip(redisUrl) },
  async (t) => {
    const { start } = node(t, 'api', { KENNEL_REDIS_URL: redisUrl })
    const kennel = await start()
    t.equal(kennel.ports.mqtt, undefined, 'no MQTT listener')
    t.equal(kennel.broker, undefined)
    t.equal(kennel.projections, undefined, 'no projector')
    const health = await request(kennel.ports.api!, { method: 'GET', path: '/healthz', ca: kennel.ca!.trustedPem })
    t.equal(health.status, 200, 'the API answers')
  },
)

t.test(
  'beside a broker and an API, the projector runs on a thread of its own and the API still reads what it wrote',
  async (t) => {
    const { config, start } = node(t, 'broker,api,projector')
    const kennel = await start()
    t.not(kennel.projections!.threadId, threadId, 'not the thread that serves toys')
    await enrollDevice({ store: kennel.store, ca: kennel.ca!, config, actor: 'cli:test' }, 'toy-threaded')
    await kennel.projections!.waitFor(await kennel.store.headPosition(), 10_000)
    const stored = openSqliteReadModels(path.join(config.dataDir, 'readmodels.sqlite'))
    t.teardown(() => stored.close())
    t.match(
      (await stored.load('devices'))?.docs.find(([, id]) => id === 'toy-threaded'),
      ['devices', 'toy-threaded', { status: 'active' }],
      'committed before waitFor resolves',
    )
    const lag = await kennel.projections!.lag()
    t.equal(lag.events, 0, 'the lag is asked of the thread')
  },
)

t.test(
  "on the embedded store the projector thread's appends are made by the main thread's store (no writer thread of its own)",
  async (t) => {
    const { config, start } = node(t, 'broker,api,projector', { KENNEL_AUDIT_HEAD_EVERY_EVENTS: '1' })
    const kennel = await start()
    const seen: string[] = []
    const append = kennel.store.append.bind(kennel.store)
    // noted once committed
    kennel.store.append = (stream, events, options) =>
      append(stream, events, options).then((result) => {
        for (const e of events) seen.push(e.type)
        return result
      })
    await enrollDevice({ store: kennel.store, ca: kennel.ca!, config, actor: 'cli:test' }, 'toy-heads')
    // the audit projection signs a tree head for the new events, on the projector's thread
    const deadline = Date.now() + 10_000
    while (!seen.includes('TreeHeadSigned') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    t.ok(
      seen.includes('TreeHeadSigned'),
      `the projector's TreeHeadSigned came through the main store (${seen.join(', ')})`,
    )
    const heads = await kennel.store.readAll({ filter: { types: ['TreeHeadSigned'] } })
    t.ok(heads.length > 0, 'and is stored')
  },
)

t.test("a projector alone runs on the node's own thread", async (t) => {
  const kennel = await node(t, 'projector').start()
  t.equal(kennel.projections!.threadId, threadId)
})
