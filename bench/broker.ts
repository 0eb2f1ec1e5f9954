import { fork, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import { Session } from 'node:inspector/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import mqtt, { type MqttClient } from 'mqtt'
import { createBroker, type Broker } from '../broker/broker.ts'
import { loadDeviceCa } from '../devices/ca.ts'
import { generateKeyPair, privateKeyPem } from '../devices/crypto-keys.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { type Config, loadConfig } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import { createLogger } from '../infra/log.ts'
import { signCertificate } from '../test/helpers/pki.ts'

// `npm run bench -- broker`: mTLS connects/s, QoS0/QoS1 msgs/s and end-to-end latency with N
// toys each publishing to and subscribed on its own topic, broker RSS per idle connection at
// 2,000 connections, and revocation-to-disconnect latency (DeviceRevoked appended → socket
// closed at the client) over 100 revocations.
//
// Three kinds of process: this driver (mints certificates, coordinates, holds no sockets), one
// broker process (started with --expose-gc, so that its memory is measured alone and after full
// collections) and LOADERS load processes holding the toys, whose CPU time is reported so that
// one can see they were not the bottleneck. Certificates are signed directly with the
// development CA's key and the registry check accepts every CA-signed certificate (enrolling
// 2,000 toys through argon2 would dominate). KENNEL_BENCH_CPU_PROFILE=<file> writes a V8 CPU
// profile of the broker process during the connect phase.

const LOADERS = 2
const CONNECT_SAMPLE = 400
const PUBSUB_DEVICES = 50
const PUBSUB_SECONDS = 5
const IDLE_CONNECTIONS = 2000
const WARMUP_CONNECTIONS = 20
const MEMORY_SAMPLES = 5
const REVOCATIONS = 100

interface Device {
  id: string
  certPem: string
}
interface Shared {
  port: number
  keyPem: string
  caPem: string
}
type Message = { op: string; [k: string]: unknown }
type Reply = Record<string, unknown>

const now = (): number => performance.timeOrigin + performance.now()
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}
const median = (xs: number[]): number => pct(xs, 50)
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const cpuMs = (since?: NodeJS.CpuUsage): number => {
  const c = process.cpuUsage(since)
  return (c.user + c.system) / 1000
}

function benchConfig(dir: string): Config {
  const many = '100000000/second'
  return loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_MQTT_PORT: '0',
    KENNEL_MQTT_CONNECT_LIMITS: many,
    KENNEL_MQTT_CONNECT_IP_LIMITS: many,
    KENNEL_MQTT_PUBLISH_LIMITS: many,
    KENNEL_MQTT_BYTE_LIMITS: many,
  })
}

/** Answer the parent's requests ({ seq, op, ... } → { seq, ... }), one handler per op. */
function serve(handlers: Record<string, (m: Message) => Promise<Reply> | Reply>): void {
  process.on('message', (m: Message & { seq: number }) => {
    void Promise.resolve(handlers[m.op]!(m)).then((r) => process.send!({ ...r, seq: m.seq }))
  })
  process.send!({ ready: true })
}

// ---- broker process -------------------------------------------------------------------------
async function brokerProcess(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (!gc) throw new Error('the broker process needs --expose-gc')
  let broker!: Broker
  let store!: EventStore
  let profiler: Session | undefined
  serve({
    async init(m) {
      const config = benchConfig(m.dir as string)
      store = await openEventStore(config.eventStoreUrl, { environment: config.env })
      const ca = await loadDeviceCa(config)
      const serverTls = await loadServerTls(config, ca)
      broker = await createBroker({
        config,
        store,
        tls: { ca: ca.trustedPem, ...serverTls },
        checkCertificate: () => ({ ok: true }),
        log: createLogger('silent'),
      })
      return { port: await broker.listen(0, '127.0.0.1') }
    },
    cpu: () => ({ cpuMs: cpuMs() }),
    // RSS after full collections: the median of a few samples, so that neither a collection in
    // progress nor a burst of allocation decides the figure
    async memory() {
      await broker.flushEvents()
      const samples: NodeJS.MemoryUsage[] = []
      for (let i = 0; i < MEMORY_SAMPLES; i++) {
        gc()
        gc()
        await sleep(200)
        samples.push(process.memoryUsage())
      }
      const of = (k: keyof NodeJS.MemoryUsage): number => median(samples.map((s) => s[k]))
      return {
        clients: broker.connectedClients(),
        rss: of('rss'),
        heapUsed: of('heapUsed'),
        external: of('external'),
        arrayBuffers: of('arrayBuffers'),
      }
    },
    async revoke(m) {
      const id = m.id as string
      const start = now()
      await store.append(`device-${id}`, [
        {
          type: 'DeviceRevoked',
          data: { deviceId: id, reason: 'bench', revokedAt: new Date().toISOString(), serials: [] },
        },
      ])
      return { start }
    },
    async profileStart() {
      profiler = new Session()
      profiler.connect()
      await profiler.post('Profiler.enable')
      await profiler.post('Profiler.setSamplingInterval', { interval: 100 })
      await profiler.post('Profiler.start')
      return {}
    },
    async profileStop(m) {
      if (!profiler) return {}
      const { profile } = await profiler.post('Profiler.stop')
      fs.writeFileSync(m.file as string, JSON.stringify(profile))
      profiler.disconnect()
      return {}
    },
    async close() {
      await broker.close()
      await store.close()
      return {}
    },
  })
}

// ---- load generator (child process) ---------------------------------------------------------
async function loaderProcess(): Promise<void> {
  let shared!: Shared
  const clients = new Map<string, MqttClient>()
  const closed = new Map<string, Promise<number>>()
  const connectOne = (d: Device): Promise<MqttClient> =>
    new Promise((resolve, reject) => {
      const c = mqtt.connect(`mqtts://127.0.0.1:${shared.port}`, {
        key: shared.keyPem,
        cert: d.certPem,
        ca: shared.caPem,
        clientId: d.id,
        protocolVersion: 4,
        reconnectPeriod: 0,
        keepalive: 600,
        servername: 'localhost',
      })
      c.once('connect', () => resolve(c))
      c.once('error', reject)
    })
  const timed =
    (fn: (m: Message) => Promise<Reply> | Reply) =>
    async (m: Message): Promise<Reply> => {
      const cpu0 = process.cpuUsage()
      const r = await fn(m)
      return { ...r, cpuMs: cpuMs(cpu0) }
    }
  serve({
    init: (m) => ((shared = m.shared as Shared), {}),
    connect: timed(async (m) => {
      const devices = m.devices as Device[]
      let next = 0
      await Promise.all(
        Array.from({ length: m.concurrency as number }, async () => {
          while (next < devices.length) {
            const d = devices[next++]!
            clients.set(d.id, await connectOne(d))
          }
        }),
      )
      return { connected: devices.length }
    }),
    end: timed(async () => {
      await Promise.all([...clients.values()].map((c) => c.endAsync(true)))
      clients.clear()
      return {}
    }),
    pubsub: timed(async (m) => {
      const qos = m.qos as 0 | 1
      const latencies: number[] = []
      let received = 0
      const waiting = new Map<string, { left: number; resolve: () => void }>()
      await Promise.all(
        [...clients].map(async ([id, c]) => {
          await c.subscribeAsync(`toys/${id}/bench`, { qos })
          c.on('message', (_t, payload: Buffer) => {
            received++
            if (received % 10 === 0) latencies.push(now() - payload.readDoubleLE(0))
            const w = waiting.get(id)
            if (w && --w.left === 0) waiting.delete(id), w.resolve()
          })
        }),
      )
      const t0 = now()
      const until = t0 + (m.seconds as number) * 1000
      // closed loop: each toy keeps a window of 10 messages in flight and sends the next window
      // when its own subscription has received the last one, so queues cannot build up anywhere
      await Promise.all(
        [...clients].map(async ([id, c]) => {
          while (now() < until) {
            const back = new Promise<void>((resolve) => waiting.set(id, { left: 10, resolve }))
            for (let i = 0; i < 10; i++) {
              const payload = Buffer.alloc(64)
              payload.writeDoubleLE(now(), 0)
              c.publish(`toys/${id}/bench`, payload, { qos })
            }
            await Promise.race([back, sleep(2000)])
          }
        }),
      )
      await sleep(500)
      for (const c of clients.values()) c.removeAllListeners('message')
      return { received, seconds: (now() - t0) / 1000, latencies }
    }),
    watch(m) {
      const c = clients.get(m.id as string)
      closed.set(
        m.id as string,
        c ? new Promise((resolve) => c.once('close', () => resolve(now()))) : Promise.resolve(NaN),
      )
      return {}
    },
    async closed(m) {
      return { closedAt: await closed.get(m.id as string)! }
    },
  })
}

// ---- driver ---------------------------------------------------------------------------------
class Child {
  private seq = 0
  private readonly waiting = new Map<number, (m: Reply) => void>()
  private constructor(readonly process: ChildProcess) {
    process.on('message', (m: Reply & { seq?: number }) => {
      if (m.seq === undefined) return
      this.waiting.get(m.seq)?.(m)
      this.waiting.delete(m.seq)
    })
  }
  static async start(role: string, execArgv: string[] = []): Promise<Child> {
    const child = fork(fileURLToPath(import.meta.url), [], {
      execArgv: ['--import', 'tsx', ...execArgv],
      env: { ...process.env, KENNEL_BENCH_BROKER_ROLE: role },
    })
    await new Promise((resolve, reject) => (child.once('message', resolve), child.once('exit', reject)))
    return new Child(child)
  }
  request(msg: Message): Promise<Reply> {
    const seq = this.seq++
    return new Promise((resolve) => {
      this.waiting.set(seq, resolve)
      this.process.send({ ...msg, seq })
    })
  }
}

export async function run(opts: { json: boolean }): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(process.env.KENNEL_BENCH_DIR ?? os.tmpdir(), 'kennel-bench-broker-'))
  const ca = await loadDeviceCa(benchConfig(dir))
  const log = (s: string): void => void (opts.json ? process.stderr : process.stdout).write(`${s}\n`)

  log(`minting ${IDLE_CONNECTIONS + WARMUP_CONNECTIONS} device certificates…`)
  const keys = await generateKeyPair('P-256')
  const devices: Device[] = []
  for (let i = 0; i < IDLE_CONNECTIONS + WARMUP_CONNECTIONS; i++) {
    const id = `bench-${String(i).padStart(5, '0')}`
    devices.push({ id, certPem: (await signCertificate({ commonName: id, keys, signer: ca.issuer })).toString('pem') })
  }
  const warmup = devices.slice(IDLE_CONNECTIONS)
  const idle = devices.slice(0, IDLE_CONNECTIONS)
  // revoked toys cannot come back: the connect and pub/sub phases use toys after them
  const connectSample = idle.slice(REVOCATIONS, REVOCATIONS + CONNECT_SAMPLE)
  const pubsubSample = idle.slice(REVOCATIONS + CONNECT_SAMPLE, REVOCATIONS + CONNECT_SAMPLE + PUBSUB_DEVICES)

  const broker = await Child.start('broker', ['--expose-gc'])
  const { port } = await broker.request({ op: 'init', dir })
  const shared: Shared = { port: port as number, keyPem: await privateKeyPem(keys.privateKey), caPem: ca.trustedPem }
  const loaders = await Promise.all(
    Array.from({ length: LOADERS }, async () => {
      const l = await Child.start('loader')
      await l.request({ op: 'init', shared })
      return l
    }),
  )
  const split = <T>(xs: T[]): T[][] => loaders.map((_, i) => xs.filter((_, j) => j % LOADERS === i))
  const onLoaders = (xs: Device[], concurrency: number): Promise<Reply[]> =>
    Promise.all(split(xs).map((d, i) => loaders[i]!.request({ op: 'connect', devices: d, concurrency })))
  const endAll = (): Promise<Reply[]> => Promise.all(loaders.map((l) => l.request({ op: 'end' })))
  const cpuOf = (rs: Reply[]): number => round(rs.reduce((s, r) => s + (r.cpuMs as number), 0))
  const brokerCpu = async (): Promise<number> => (await broker.request({ op: 'cpu' })).cpuMs as number

  // RSS per idle connection: the broker's own process, after a warm-up (code loaded, JIT
  // compiled), measured with 0 and with IDLE_CONNECTIONS connections
  await onLoaders(warmup, 8)
  await endAll()
  await sleep(500)
  const before = await broker.request({ op: 'memory' })
  let rs = await onLoaders(idle, 16)
  await sleep(1000)
  const after = await broker.request({ op: 'memory' })
  const per = (k: string): number => Math.round(((after[k] as number) - (before[k] as number)) / IDLE_CONNECTIONS)
  const memory = {
    connections: after.clients as number,
    rssBeforeMB: round((before.rss as number) / 2 ** 20),
    rssAfterMB: round((after.rss as number) / 2 ** 20),
    bytesPerConnection: per('rss'),
    heapBytesPerConnection: per('heapUsed'),
    externalBytesPerConnection: per('external'),
    loaderCpuMs: cpuOf(rs),
  }
  log(`RSS: ${JSON.stringify(memory)}`)

  // revocation → disconnect
  const revocationMs: number[] = []
  for (let i = 0; i < REVOCATIONS; i++) {
    const d = idle[i]!
    const owner = loaders[i % LOADERS]!
    await owner.request({ op: 'watch', id: d.id })
    const closed = owner.request({ op: 'closed', id: d.id })
    const { start } = await broker.request({ op: 'revoke', id: d.id })
    revocationMs.push(((await closed).closedAt as number) - (start as number))
  }
  const revocation = {
    count: REVOCATIONS,
    p50Ms: round(pct(revocationMs, 50), 2),
    p99Ms: round(pct(revocationMs, 99), 2),
    maxMs: round(Math.max(...revocationMs), 2),
  }
  log(`revocation: ${JSON.stringify(revocation)}`)
  await endAll()
  await sleep(500)

  // connects/s
  const profile = process.env.KENNEL_BENCH_CPU_PROFILE
  if (profile) await broker.request({ op: 'profileStart' })
  let cpu0 = await brokerCpu()
  const t0 = now()
  rs = await onLoaders(connectSample, 16)
  const connectSeconds = (now() - t0) / 1000
  const connectBrokerCpuMs = (await brokerCpu()) - cpu0
  if (profile) await broker.request({ op: 'profileStop', file: path.resolve(profile) })
  const connects = {
    perSecond: round(CONNECT_SAMPLE / connectSeconds),
    brokerCpuMs: round(connectBrokerCpuMs),
    brokerCpuMsPerConnect: round(connectBrokerCpuMs / CONNECT_SAMPLE, 2),
    loaderCpuMs: cpuOf(rs),
    wallMs: round(connectSeconds * 1000),
  }
  await endAll()
  log(`mTLS connects/s: ${JSON.stringify(connects)}`)

  // QoS0 / QoS1 throughput and latency
  const throughput: Record<string, Record<string, number>> = {}
  await onLoaders(pubsubSample, 8)
  for (const qos of [0, 1] as const) {
    cpu0 = await brokerCpu()
    rs = await Promise.all(loaders.map((l) => l.request({ op: 'pubsub', qos, seconds: PUBSUB_SECONDS })))
    const received = rs.reduce((s, r) => s + (r.received as number), 0)
    const seconds = Math.max(...rs.map((r) => r.seconds as number))
    const latencies = rs.flatMap((r) => r.latencies as number[])
    throughput[`qos${qos}`] = {
      msgsPerSecond: round(received / seconds),
      p50Ms: round(pct(latencies, 50), 2),
      p99Ms: round(pct(latencies, 99), 2),
      brokerCpuMs: round((await brokerCpu()) - cpu0),
      loaderCpuMs: cpuOf(rs),
      seconds: round(seconds),
    }
    log(`QoS${qos}: ${JSON.stringify(throughput[`qos${qos}`])}`)
  }
  await endAll()

  await broker.request({ op: 'close' })
  for (const c of [broker, ...loaders]) c.process.kill()
  fs.rmSync(dir, { recursive: true, force: true })

  const result = {
    loaders: LOADERS,
    cpus: os.cpus().length,
    connects,
    throughput,
    memory,
    revocation,
    targets: { revocationP99Ms: 100, bytesPerConnection: 50 * 1024 },
  }
  const q0 = throughput.qos0!
  const q1 = throughput.qos1!
  log('')
  log(
    `broker benchmark (${PUBSUB_DEVICES} toys publishing 64-byte messages to their own topics, ${LOADERS} load processes, ${os.cpus().length} CPUs)`,
  )
  log('figure                                   value        broker CPU ms   load CPU ms')
  log(
    `mTLS connects/s (${CONNECT_SAMPLE})                 ${String(connects.perSecond).padStart(9)}   ${String(connects.brokerCpuMs).padStart(13)}   ${String(connects.loaderCpuMs).padStart(11)}`,
  )
  log(
    `QoS0 msgs/s  (p50 / p99 ms)           ${String(q0.msgsPerSecond).padStart(9)}  (${q0.p50Ms} / ${q0.p99Ms})   ${String(q0.brokerCpuMs).padStart(6)}   ${String(q0.loaderCpuMs).padStart(11)}`,
  )
  log(
    `QoS1 msgs/s  (p50 / p99 ms)           ${String(q1.msgsPerSecond).padStart(9)}  (${q1.p50Ms} / ${q1.p99Ms})   ${String(q1.brokerCpuMs).padStart(6)}   ${String(q1.loaderCpuMs).padStart(11)}`,
  )
  log(
    `RSS per idle connection (${IDLE_CONNECTIONS})          ${String(memory.bytesPerConnection).padStart(9)} B   target ≤ ${50 * 1024} B (JS heap ${memory.heapBytesPerConnection} B, external ${memory.externalBytesPerConnection} B)`,
  )
  log(`revocation → disconnect p50 / p99 ms   ${revocation.p50Ms} / ${revocation.p99Ms}   target p99 ≤ 100 ms`)
  return result
}

const role = process.env.KENNEL_BENCH_BROKER_ROLE
if (role === 'broker' && process.send) void brokerProcess()
if (role === 'loader' && process.send) void loaderProcess()
