import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { buildApi } from '../api/app.ts'
import { listenApi } from '../api/listen.ts'
import { ApiMetrics } from '../api/metrics.ts'
import { loadDeviceCa } from '../devices/ca.ts'
import { enrollDevice } from '../devices/enroll.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { loadMasterKey } from '../infra/blobstore/keys.ts'
import { loadConfig } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import { OutboxMailer, outboxDir, readOutbox } from '../infra/mail/outbox.ts'
import { findVerificationToken } from '../api/accounts/tokens.ts'

// `npm run bench -- api`: presign (download-url) requests/s and latency on a device route over
// keep-alive mTLS, and logins/s (argon2id-bound). The server runs in this process; the load runs
// in child processes (autocannon, one per process, each connection a keep-alive TLS session with
// the toy's client certificate), so the server's CPU and the load generator's CPU are measured
// apart. Every presign still appends its DownloadUrlIssued event before it is answered.
//
// The per-certificate limits (default 60/minute, 200/hour, 400/day) would stop the run after 60
// requests; the bench configures 10^9 per window for its own run, keeping all three windows so
// that the limiter's cost is measured. Tunables: KENNEL_BENCH_API_SECONDS (default 10),
// KENNEL_BENCH_API_CONNECTIONS (32), KENNEL_BENCH_API_LOADERS (load processes, default 1).

const PASSWORD = 'violet-Harbour-43-quiet-Lantern'
const BENCH_LIMITS = '1000000000/minute,1000000000/hour,1000000000/day'

// one load process: autocannon with exact per-response latencies (its histogram keeps whole ms)
const loaderSource = `
const autocannon = require(process.env.AUTOCANNON)
const spec = JSON.parse(process.env.LOAD_SPEC)
const latencies = []
const statuses = {}
const cpu0 = process.cpuUsage()
const t0 = Date.now()
const instance = autocannon({
  url: 'https://127.0.0.1:' + spec.port + spec.path,
  method: spec.method,
  connections: spec.connections,
  duration: spec.seconds,
  headers: spec.body ? { 'content-type': 'application/json' } : {},
  body: spec.body,
  servername: 'localhost',
  tlsOptions: { ca: spec.ca, key: spec.key, cert: spec.cert },
}, (err, result) => {
  if (err) throw err
  const cpu = process.cpuUsage(cpu0)
  process.send({ latencies, statuses, errors: result.errors + result.timeouts, elapsedMs: Date.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 }, () => process.exit(0))
})
instance.on('response', (_client, status, _bytes, ms) => { latencies.push(ms); statuses[status] = (statuses[status] || 0) + 1 })
`

interface LoadSpec {
  port: number
  ca: string
  key?: string
  cert?: string
  method: string
  path: string
  body?: string
  connections: number
  seconds: number
}

interface LoadResult {
  requests: number
  /** responses that were not 2xx, plus socket errors and timeouts */
  errors: number
  rps: number
  p50: number
  p99: number
  max: number
  /** load generator CPU, percent of one core */
  loadCpuPercent: number
  /** server process CPU over the same interval, percent of one core */
  serverCpuPercent: number
}

interface LoaderReport {
  latencies: number[]
  statuses: Record<string, number>
  errors: number
  elapsedMs: number
  cpuMs: number
}

function loader(spec: LoadSpec): Promise<LoaderReport> {
  const autocannonPath = createRequire(import.meta.url).resolve('autocannon')
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', loaderSource], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, AUTOCANNON: autocannonPath, LOAD_SPEC: JSON.stringify(spec) },
    })
    child.once('message', (m) => resolve(m as LoaderReport))
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`load process exited with ${code}`))))
  })
}

async function load(spec: LoadSpec, loaders: number): Promise<LoadResult> {
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const per = Math.max(1, Math.floor(spec.connections / loaders))
  const reports = await Promise.all(Array.from({ length: loaders }, () => loader({ ...spec, connections: per })))
  const serverCpu = process.cpuUsage(cpu0)
  const wallMs = performance.now() - t0
  const latencies = reports.flatMap((r) => r.latencies).sort((a, b) => a - b)
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0
  const elapsed = Math.max(...reports.map((r) => r.elapsedMs)) / 1000
  const non2xx = reports.reduce(
    (s, r) => s + Object.entries(r.statuses).reduce((n, [code, count]) => n + (code.startsWith('2') ? 0 : count), 0),
    0,
  )
  return {
    requests: latencies.length,
    errors: non2xx + reports.reduce((s, r) => s + r.errors, 0),
    rps: Math.round(latencies.length / elapsed),
    p50: round(pct(50)),
    p99: round(pct(99)),
    max: round(latencies.at(-1) ?? 0),
    loadCpuPercent: Math.round((reports.reduce((s, r) => s + r.cpuMs, 0) / 1000 / elapsed) * 100),
    serverCpuPercent: Math.round(((serverCpu.user + serverCpu.system) / 1000 / wallMs) * 100),
  }
}

const round = (n: number) => Math.round(n * 100) / 100
const envInt = (name: string, fallback: number) => {
  const v = Number(process.env[name])
  return Number.isInteger(v) && v > 0 ? v : fallback
}

export async function run(opts: { json: boolean }): Promise<Record<string, unknown>> {
  const seconds = envInt('KENNEL_BENCH_API_SECONDS', 10)
  const connections = envInt('KENNEL_BENCH_API_CONNECTIONS', 32)
  const loaders = envInt('KENNEL_BENCH_API_LOADERS', 1)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-bench-api-'))
  const config = loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_API_PORT: '0',
    KENNEL_DEVICE_API_LIMITS: BENCH_LIMITS,
    KENNEL_ACCOUNT_API_LIMITS: BENCH_LIMITS,
    KENNEL_LOGIN_FAILURE_LIMIT: '1000',
    KENNEL_LOG_LEVEL: 'silent',
  })
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  const ca = await loadDeviceCa(config)
  const metrics = new ApiMetrics()
  const mailer = new OutboxMailer(outboxDir(config.dataDir), config.mailFrom)
  const app = await buildApi({
    config,
    store,
    masterKey: loadMasterKey(config),
    ca,
    notifyDevice: () => undefined,
    mailer,
    metrics,
  })
  const server = await listenApi(app, {
    config,
    tls: await loadServerTls(config, ca),
    trustedCaPem: ca.trustedPem,
    store,
    metrics,
  })
  try {
    await app.inject({
      method: 'POST',
      url: '/v1/accounts',
      payload: { email: 'bench@example.org', password: PASSWORD },
    })
    const confirmation = findVerificationToken(readOutbox(outboxDir(config.dataDir)).at(-1)?.text ?? '')
    await app.inject({ method: 'POST', url: '/v1/accounts/verify', payload: { token: confirmation } })
    const token = (
      await app.inject({
        method: 'POST',
        url: '/v1/sessions',
        payload: { email: 'bench@example.org', password: PASSWORD },
      })
    ).json().token as string
    const auth = { authorization: `Bearer ${token}` }
    const householdId = (await app.inject({ method: 'POST', url: '/v1/households', headers: auth })).json()
      .householdId as string
    const toy = await enrollDevice({ store, ca, config, actor: 'cli:bench' }, 'bench-toy')
    await app.inject({
      method: 'POST',
      url: `/v1/households/${householdId}/devices`,
      headers: auth,
      payload: { claimCode: toy.claimCode },
    })
    const rec = (
      await app.inject({
        method: 'POST',
        url: `/v1/households/${householdId}/recordings`,
        headers: auth,
        payload: { deviceId: 'bench-toy', contentType: 'audio/ogg', bytes: 4 },
      })
    ).json()
    const u = new URL(rec.url)
    await app.inject({ method: 'PUT', url: u.pathname + u.search, headers: rec.headers, payload: Buffer.from('woof') })
    await app.inject({ method: 'POST', url: `/v1/recordings/${rec.recordingId}/complete`, headers: auth })

    const loadAverage = os.loadavg()[0]!
    const issuedBefore = (await store.readStream(`recording-${rec.recordingId}`)).length
    const presign = await load(
      {
        port: server.port,
        ca: ca.trustedPem,
        key: toy.keyPem,
        cert: toy.certPem,
        method: 'GET',
        path: `/v1/device/recordings/${rec.recordingId}/download-url`,
        connections,
        seconds,
      },
      loaders,
    )
    const issued = (await store.readStream(`recording-${rec.recordingId}`)).length - issuedBefore
    const login = await load(
      {
        port: server.port,
        ca: ca.trustedPem,
        method: 'POST',
        path: '/v1/sessions',
        body: JSON.stringify({ email: 'bench@example.org', password: PASSWORD }),
        connections: 8,
        seconds: Math.min(seconds, 5),
      },
      1,
    )
    const result = {
      presignRps: presign.rps,
      presignP50Ms: presign.p50,
      presignP99Ms: presign.p99,
      presignMaxMs: presign.max,
      presignErrors: presign.errors,
      presignRequests: presign.requests,
      presignEventsAppended: issued,
      presignServerCpuPercent: presign.serverCpuPercent,
      presignLoadCpuPercent: presign.loadCpuPercent,
      loginRps: login.rps,
      loginP50Ms: login.p50,
      loginP99Ms: login.p99,
      loginErrors: login.errors,
      connections,
      loadProcesses: loaders,
      seconds,
      deviceLimits: BENCH_LIMITS,
      cpus: os.cpus().length,
      loadAverageBefore: round(loadAverage),
      targets: { presignRps: 5000, presignP99Ms: 20 },
    }
    if (!opts.json) {
      const rows: Array<[string, string]> = [
        [
          `presign (device download-url, mTLS keep-alive, ${connections} conns)`,
          `${presign.rps} req/s  p50 ${presign.p50} ms  p99 ${presign.p99} ms  max ${presign.max} ms  errors ${presign.errors}`,
        ],
        ['  DownloadUrlIssued events appended / 2xx answers', `${issued} / ${presign.requests - presign.errors}`],
        [
          '  server CPU / load-generator CPU',
          `${presign.serverCpuPercent}% / ${presign.loadCpuPercent}% (of one core; ${os.cpus().length} cores, ${loaders} load process(es))`,
        ],
        [
          'login (argon2id 64 MiB, t=3, 8 conns)',
          `${login.rps} req/s  p50 ${login.p50} ms  p99 ${login.p99} ms  errors ${login.errors}  (server CPU ${login.serverCpuPercent}%)`,
        ],
        [
          'machine',
          `${os.cpus().length} cores, 1-minute load average ${round(loadAverage)} before the run (other processes skew the figures)`,
        ],
        ['device limits for this run', `${BENCH_LIMITS} per certificate (default 60/minute,200/hour,400/day)`],
        ['targets', 'presign ≥ 5000 req/s, p99 ≤ 20 ms'],
      ]
      for (const [k, v] of rows) process.stdout.write(`${k.padEnd(60)} ${v}\n`)
    }
    return result
  } finally {
    await server.close()
    await mailer.close()
    await store.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const json = process.argv.includes('--json')
  const r = await run({ json })
  if (json) process.stdout.write(`${JSON.stringify(r)}\n`)
}
