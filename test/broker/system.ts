import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Redis } from 'ioredis'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { loadDeviceCa, type DeviceCa } from '../../devices/ca.ts'
import { enrollDevice, type EnrolledDevice } from '../../devices/enroll.ts'
import { checkCertificate, devicesProjection } from '../../devices/registry.ts'
import { loadServerTls } from '../../devices/server-tls.ts'
import { type Config, loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import { createLogger } from '../../infra/log.ts'
import { followProjections, type FollowedProjections } from '../../projections/follow.ts'
import { type Broker, createBroker } from '../../broker/broker.ts'

// A broker on a temporary data dir, port 0, with the real device CA, enrolment and registry,
// torn down with the test. With KENNEL_REDIS_URL in `env` it runs in cluster mode (Redis
// persistence, emitter and rate limits) under a fresh key prefix, deleted afterwards.

interface Tap {
  teardown(fn: () => unknown): void
}

export interface DeviceFiles extends EnrolledDevice {
  dir: string
  keyFile: string
  certFile: string
  caFile: string
}

export interface BrokerSystem {
  dir: string
  config: Config
  store: EventStore
  ca: DeviceCa
  projections: FollowedProjections
  broker: Broker
  port: number
  enroll(deviceId: string): Promise<DeviceFiles>
  /** events of the given types, after flushing the broker's queue */
  events(...types: string[]): Promise<RecordedEvent[]>
  /** MQTT.js over mutual TLS with the device's files; rejects with the CONNACK code on refusal */
  connect(
    device: { keyPem: string; certPem: string; caPem: string; deviceId: string },
    options?: IClientOptions,
  ): Promise<MqttClient>
}

let counter = 0
export const uniqueId = (prefix: string): string => `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter++}`

export async function startBrokerSystem(
  t: Tap,
  env: Record<string, string> = {},
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-broker-')),
): Promise<BrokerSystem> {
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const config = loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_MQTT_PORT: '0',
    KENNEL_LOG_LEVEL: 'silent',
    ...env,
  })
  const log = createLogger('silent')
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  t.teardown(() => store.close())
  const projections = followProjections(store, [devicesProjection])
  t.teardown(() => projections.stop())
  await projections.caughtUp
  const ca = await loadDeviceCa(config)
  const serverTls = await loadServerTls(config, ca)

  const clusterKeyPrefix = config.redisUrl ? `kennel-test-${randomUUID()}:` : undefined
  if (config.redisUrl && clusterKeyPrefix) t.teardown(() => deleteKeys(config.redisUrl!, clusterKeyPrefix))
  const broker = await createBroker({
    config,
    store,
    tls: { ca: ca.trustedPem, ...serverTls },
    checkCertificate: (id, serial, now) => checkCertificate(projections.docs, id, serial, now),
    log,
    clusterKeyPrefix,
  })
  t.teardown(() => broker.close())
  const port = await broker.listen(0, '127.0.0.1')

  const clients = new Set<MqttClient>()
  t.teardown(() => Promise.all([...clients].map((c) => c.endAsync(true).catch(() => undefined))))

  return {
    dir,
    config,
    store,
    ca,
    projections,
    broker,
    port,
    async enroll(deviceId) {
      const enrolled = await enrollDevice({ store, ca, config, actor: 'cli:test' }, deviceId)
      await projections.waitFor(await store.headPosition())
      const ddir = path.join(dir, 'devices', deviceId)
      fs.mkdirSync(ddir, { recursive: true, mode: 0o700 })
      const files = {
        keyFile: path.join(ddir, 'device.key'),
        certFile: path.join(ddir, 'device.crt'),
        caFile: path.join(ddir, 'ca.crt'),
      }
      fs.writeFileSync(files.keyFile, enrolled.keyPem, { mode: 0o600 })
      fs.writeFileSync(files.certFile, enrolled.certPem)
      fs.writeFileSync(files.caFile, enrolled.caPem)
      return { ...enrolled, dir: ddir, ...files }
    },
    async events(...types) {
      await broker.flushEvents()
      return store.readAll({ filter: types.length > 0 ? { types } : undefined })
    },
    async connect(device, options = {}) {
      const client = mqtt.connect(`mqtts://127.0.0.1:${options.port ?? port}`, {
        key: device.keyPem,
        cert: device.certPem,
        ca: device.caPem,
        clientId: device.deviceId,
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        ...options,
      })
      clients.add(client)
      return new Promise((resolve, reject) => {
        client.once('connect', () => resolve(client))
        client.once('error', (err) => (client.end(true), reject(err)))
        client.once('close', () =>
          reject(Object.assign(new Error('connection closed before CONNACK'), { code: 'closed' })),
        )
      })
    },
  }
}

/** the next message the client receives */
export function nextMessage(client: MqttClient, timeoutMs = 5000): Promise<{ topic: string; payload: Buffer }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => (client.off('message', on), reject(new Error('no message within the timeout'))),
      timeoutMs,
    )
    const on = (topic: string, payload: Buffer): void => {
      clearTimeout(timer)
      client.off('message', on)
      resolve({ topic, payload })
    }
    client.on('message', on)
  })
}

/** every message the client receives from now on */
export function collectMessages(client: MqttClient): Array<{ topic: string; payload: string }> {
  const seen: Array<{ topic: string; payload: string }> = []
  client.on('message', (topic, payload) => seen.push({ topic, payload: payload.toString() }))
  return seen
}

/** the SUBACK return codes for the given filters (mqtt.js rejects when one is 0x80) */
export function subscribeCodes(client: MqttClient, filters: string[], qos: 0 | 1 = 1): Promise<number[]> {
  const map = Object.fromEntries(filters.map((f) => [f, { qos }]))
  return new Promise((resolve, reject) => {
    client.subscribe(map, (err, _granted, packet) => {
      const granted =
        (packet as { granted?: number[] } | undefined)?.granted ??
        (err as { packet?: { granted?: number[] } } | null)?.packet?.granted
      if (granted) resolve(granted)
      else reject(err ?? new Error('no SUBACK'))
    })
  })
}

/** false when Redis answers at `url`, else why the test is skipped */
export async function redisSkip(url: string): Promise<false | string> {
  const r = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  try {
    await r.connect()
    return (await r.ping()) === 'PONG' ? false : `Redis at ${url} did not answer PING`
  } catch {
    return `Redis not reachable at ${url} (set KENNEL_TEST_REDIS_URL)`
  } finally {
    r.disconnect()
  }
}

async function deleteKeys(url: string, prefix: string): Promise<void> {
  const r = new Redis(url)
  const keys = await r.keys(`${prefix}*`)
  if (keys.length > 0) await r.del(...keys)
  r.disconnect()
}
