import { fork, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import mqtt, { type MqttClient } from 'mqtt'
import { createBroker } from '../broker/broker.ts'
import { loadDeviceCa } from '../devices/ca.ts'
import { generateKeyPair, privateKeyPem } from '../devices/crypto-keys.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { loadConfig } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import { createLogger } from '../infra/log.ts'
import { signCertificate } from '../test/helpers/pki.ts'

// `npm run bench -- broker`: mTLS connects/s, QoS0/QoS1 msgs/s and end-to-end latency with N
// toys each publishing to and subscribed on its own topic, broker RSS per idle connection at
// 2,000 connections, and revocation-to-disconnect latency (DeviceRevoked appended → socket
// closed at the client) over 100 revocations. The broker runs in this process; the toys run in
// LOADERS child processes, whose CPU time is reported so that one can see they were not the
// bottleneck. Certificates are signed directly with the development CA's key and the registry
// check accepts every CA-signed certificate (enrolling 2,000 toys through argon2 would dominate).

const LOADERS = 2
const CONNECT_SAMPLE = 400
const PUBSUB_DEVICES = 50
const PUBSUB_SECONDS = 5
const IDLE_CONNECTIONS = 2000
const REVOCATIONS = 100

interface Device { id: string; certPem: string }
interface Shared { port: number; keyPem: string; caPem: string }

const now = (): number => performance.timeOrigin + performance.now()
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d

// ---- load generator (child process) ---------------------------------------------------------
async function loader(): Promise<void> {
  let shared!: Shared
  const clients = new Map<string, MqttClient>()
  const connectOne = (d: Device): Promise<MqttClient> =>
    new Promise((resolve, reject) => {
      const c = mqtt.connect(`mqtts://127.0.0.1:${shared.port}`, { key: shared.keyPem, cert: d.certPem, ca: shared.caPem, clientId: d.id, protocolVersion: 4, reconnectPeriod: 0, keepalive: 600, servername: 'localhost' })
      c.once('connect', () => resolve(c))
      c.once('error', reject)
    })
  const reply = (msg: unknown): void => void process.send!(msg)
  process.on('message', async (m: { op: string; [k: string]: unknown }) => {
    const cpu0 = process.cpuUsage()
    const done = (extra: Record<string, unknown>): void => {
      const cpu = process.cpuUsage(cpu0)
      reply({ ...extra, cpuMs: (cpu.user + cpu.system) / 1000 })
    }
    if (m.op === 'init') return done((shared = m.shared as Shared) && {})
    if (m.op === 'connect') {
      const devices = m.devices as Device[]
      const concurrency = m.concurrency as number
      let next = 0
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < devices.length) {
          const d = devices[next++]!
          clients.set(d.id, await connectOne(d))
        }
      }))
      return done({ connected: devices.length })
    }
    if (m.op === 'end') {
      await Promise.all([...clients.values()].map((c) => c.endAsync(true)))
      clients.clear()
      return done({})
    }
    if (m.op === 'pubsub') {
      const qos = m.qos as 0 | 1
      const latencies: number[] = []
      let received = 0
      const waiting = new Map<string, { left: number; resolve: () => void }>()
      await Promise.all([...clients].map(async ([id, c]) => {
        await c.subscribeAsync(`toys/${id}/bench`, { qos })
        c.on('message', (_t, payload: Buffer) => {
          received++
          if (received % 10 === 0) latencies.push(now() - payload.readDoubleLE(0))
          const w = waiting.get(id)
          if (w && --w.left === 0) (waiting.delete(id), w.resolve())
        })
      }))
      const t0 = now()
      const until = t0 + (m.seconds as number) * 1000
      // closed loop: each toy keeps a window of 10 messages in flight and sends the next window
      // when its own subscription has received the last one, so queues cannot build up anywhere
      await Promise.all([...clients].map(async ([id, c]) => {
        while (now() < until) {
          const back = new Promise<void>((resolve) => waiting.set(id, { left: 10, resolve }))
          for (let i = 0; i < 10; i++) {
            const payload = Buffer.alloc(64)
            payload.writeDoubleLE(now(), 0)
            c.publish(`toys/${id}/bench`, payload, { qos })
          }
          await Promise.race([back, new Promise((r) => setTimeout(r, 2000))])
        }
      }))
      await new Promise((r) => setTimeout(r, 500))
      for (const c of clients.values()) c.removeAllListeners('message')
      return done({ received, seconds: (now() - t0) / 1000, latencies })
    }
    if (m.op === 'watch') {
      const c = clients.get(m.id as string)
      if (!c) return done({ closedAt: NaN })
      c.once('close', () => done({ closedAt: now() }))
      return reply({ watching: true })
    }
  })
  reply({ ready: true })
}

// ---- driver (broker process) ----------------------------------------------------------------
class Loader {
  private pending: Array<(m: Record<string, unknown>) => void> = []
  constructor(readonly child: ChildProcess) {
    child.on('message', (m: Record<string, unknown>) => this.pending.shift()?.(m))
  }
  request(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      this.pending.push(resolve)
      this.child.send(msg)
    })
  }
}

export async function run(opts: { json: boolean }): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(process.env.KENNEL_BENCH_DIR ?? os.tmpdir(), 'kennel-bench-broker-'))
  const many = '100000000/second'
  const config = loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir, KENNEL_MQTT_PORT: '0', KENNEL_MQTT_CONNECT_LIMITS: many, KENNEL_MQTT_CONNECT_IP_LIMITS: many, KENNEL_MQTT_PUBLISH_LIMITS: many, KENNEL_MQTT_BYTE_LIMITS: many })
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  const ca = await loadDeviceCa(config)
  const serverTls = await loadServerTls(config, ca)
  const broker = await createBroker({ config, store, tls: { ca: ca.trustedPem, ...serverTls }, checkCertificate: () => ({ ok: true }), log: createLogger('silent') })
  const port = await broker.listen(0, '127.0.0.1')
  const log = (s: string): void => void (opts.json ? process.stderr : process.stdout).write(`${s}\n`)

  log(`minting ${IDLE_CONNECTIONS} device certificates…`)
  const keys = await generateKeyPair('P-256')
  const devices: Device[] = []
  for (let i = 0; i < IDLE_CONNECTIONS; i++) {
    const id = `bench-${String(i).padStart(5, '0')}`
    devices.push({ id, certPem: (await signCertificate({ commonName: id, keys, signer: ca.issuer })).toString('pem') })
  }
  const shared: Shared = { port, keyPem: await privateKeyPem(keys.privateKey), caPem: ca.trustedPem }
  const self = fileURLToPath(import.meta.url)
  const loaders = await Promise.all(Array.from({ length: LOADERS }, async () => {
    const child = fork(self, [], { execArgv: ['--import', 'tsx'], env: { ...process.env, KENNEL_BENCH_BROKER_LOADER: '1' } })
    await new Promise((r) => child.once('message', r))
    const l = new Loader(child)
    await l.request({ op: 'init', shared })
    return l
  }))
  const split = <T>(xs: T[]): T[][] => loaders.map((_, i) => xs.filter((_, j) => j % LOADERS === i))
  const cpuOf = (rs: Record<string, unknown>[]): number => round(rs.reduce((s, r) => s + (r.cpuMs as number), 0))
  const brokerCpu = (): number => { const c = process.cpuUsage(); return (c.user + c.system) / 1000 }

  // connects/s
  let cpu0 = brokerCpu()
  let t0 = now()
  let rs = await Promise.all(split(devices.slice(0, CONNECT_SAMPLE)).map((d, i) => loaders[i]!.request({ op: 'connect', devices: d, concurrency: 16 })))
  const connectSeconds = (now() - t0) / 1000
  const connects = { perSecond: round(CONNECT_SAMPLE / connectSeconds), brokerCpuMs: round(brokerCpu() - cpu0), loaderCpuMs: cpuOf(rs), wallMs: round(connectSeconds * 1000) }
  await Promise.all(loaders.map((l) => l.request({ op: 'end' })))
  log(`mTLS connects/s: ${connects.perSecond}`)

  // QoS0 / QoS1 throughput and latency
  const throughput: Record<string, unknown> = {}
  await Promise.all(split(devices.slice(0, PUBSUB_DEVICES)).map((d, i) => loaders[i]!.request({ op: 'connect', devices: d, concurrency: 8 })))
  for (const qos of [0, 1] as const) {
    cpu0 = brokerCpu()
    rs = await Promise.all(loaders.map((l) => l.request({ op: 'pubsub', qos, seconds: PUBSUB_SECONDS })))
    const received = rs.reduce((s, r) => s + (r.received as number), 0)
    const seconds = Math.max(...rs.map((r) => r.seconds as number))
    const latencies = rs.flatMap((r) => r.latencies as number[])
    throughput[`qos${qos}`] = { msgsPerSecond: round(received / seconds), p50Ms: round(pct(latencies, 50), 2), p99Ms: round(pct(latencies, 99), 2), brokerCpuMs: round(brokerCpu() - cpu0), loaderCpuMs: cpuOf(rs), seconds: round(seconds) }
    log(`QoS${qos}: ${JSON.stringify(throughput[`qos${qos}`])}`)
  }
  await Promise.all(loaders.map((l) => l.request({ op: 'end' })))
  await broker.flushEvents()

  // RSS per idle connection
  await new Promise((r) => setTimeout(r, 1000))
  const rss0 = process.memoryUsage().rss
  t0 = now()
  rs = await Promise.all(split(devices).map((d, i) => loaders[i]!.request({ op: 'connect', devices: d, concurrency: 16 })))
  await broker.flushEvents()
  await new Promise((r) => setTimeout(r, 2000))
  const rss1 = process.memoryUsage().rss
  const memory = { connections: broker.connectedClients(), rssBeforeMB: round(rss0 / 2 ** 20), rssAfterMB: round(rss1 / 2 ** 20), bytesPerConnection: Math.round((rss1 - rss0) / IDLE_CONNECTIONS), loaderCpuMs: cpuOf(rs) }
  log(`RSS: ${JSON.stringify(memory)}`)

  // revocation → disconnect
  const revocationMs: number[] = []
  for (let i = 0; i < REVOCATIONS; i++) {
    const d = devices[i]!
    const owner = loaders[i % LOADERS]!
    const watching = owner.request({ op: 'watch', id: d.id })
    const closed = owner.request({ op: '__closed__' }) // the second reply of a watch
    await watching
    const start = now()
    await store.append(`device-${d.id}`, [{ type: 'DeviceRevoked', data: { deviceId: d.id, reason: 'bench', revokedAt: new Date().toISOString(), serials: [] } }])
    const r = await closed
    revocationMs.push((r.closedAt as number) - start)
  }
  const revocation = { count: REVOCATIONS, p50Ms: round(pct(revocationMs, 50), 2), p99Ms: round(pct(revocationMs, 99), 2), maxMs: round(Math.max(...revocationMs), 2) }
  log(`revocation: ${JSON.stringify(revocation)}`)

  await Promise.all(loaders.map((l) => l.request({ op: 'end' })))
  for (const l of loaders) l.child.kill()
  await broker.close()
  await store.close()
  fs.rmSync(dir, { recursive: true, force: true })

  const result = { loaders: LOADERS, cpus: os.cpus().length, connects, throughput, memory, revocation, targets: { revocationP99Ms: 100, bytesPerConnection: 50 * 1024 } }
  const q0 = throughput.qos0 as Record<string, number>
  const q1 = throughput.qos1 as Record<string, number>
  log('')
  log(`broker benchmark (${PUBSUB_DEVICES} toys publishing 64-byte messages to their own topics, ${LOADERS} load processes, ${os.cpus().length} CPUs)`)
  log('figure                                   value        broker CPU ms   load CPU ms')
  log(`mTLS connects/s (${CONNECT_SAMPLE})                 ${String(connects.perSecond).padStart(9)}   ${String(connects.brokerCpuMs).padStart(13)}   ${String(connects.loaderCpuMs).padStart(11)}`)
  log(`QoS0 msgs/s  (p50 / p99 ms)           ${String(q0.msgsPerSecond).padStart(9)}  (${q0.p50Ms} / ${q0.p99Ms})   ${String(q0.brokerCpuMs).padStart(6)}   ${String(q0.loaderCpuMs).padStart(11)}`)
  log(`QoS1 msgs/s  (p50 / p99 ms)           ${String(q1.msgsPerSecond).padStart(9)}  (${q1.p50Ms} / ${q1.p99Ms})   ${String(q1.brokerCpuMs).padStart(6)}   ${String(q1.loaderCpuMs).padStart(11)}`)
  log(`RSS per idle connection (${IDLE_CONNECTIONS})          ${String(memory.bytesPerConnection).padStart(9)} B   target ≤ ${50 * 1024} B`)
  log(`revocation → disconnect p50 / p99 ms   ${revocation.p50Ms} / ${revocation.p99Ms}   target p99 ≤ 100 ms`)
  return result
}

if (process.env.KENNEL_BENCH_BROKER_LOADER === '1' && process.send) void loader()
