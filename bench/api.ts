import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { buildApi } from '../api/app.ts'
import { listenApi } from '../api/listen.ts'
import { ApiMetrics } from '../api/metrics.ts'
import { loadDeviceCa } from '../devices/ca.ts'
import { enrollDevice } from '../devices/enroll.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { loadMasterKey } from '../infra/blobstore/keys.ts'
import { loadConfig } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'

// `npm run bench -- api`: presign (download-url) requests/s and latency on a device route over
// keep-alive mTLS, and logins/s (argon2id-bound). The load runs in worker threads with node:https
// agents holding the toy's client certificate; their CPU time is reported beside the results.
// The per-certificate limits are lifted for the run (they would stop it at 60/minute).

const PASSWORD = 'violet-Harbour-43-quiet-Lantern'

const workerSource = `
const https = require('node:https')
const { parentPort, workerData: w } = require('node:worker_threads')
const agent = new https.Agent({ keepAlive: true, maxSockets: w.concurrency, ca: w.ca, key: w.key, cert: w.cert, servername: 'localhost' })
const latencies = []
let errors = 0
const end = Date.now() + w.durationMs
const cpu0 = process.cpuUsage()
function one() {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint()
    const req = https.request({ host: '127.0.0.1', port: w.port, method: w.method, path: w.path, agent, headers: w.body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(w.body) } : {} }, (res) => {
      res.resume()
      res.on('end', () => { if (res.statusCode >= 300) errors++; latencies.push(Number(process.hrtime.bigint() - t0) / 1e6); resolve() })
    })
    req.on('error', () => { errors++; resolve() })
    req.end(w.body)
  })
}
async function loop() { while (Date.now() < end) await one() }
Promise.all(Array.from({ length: w.concurrency }, loop)).then(() => {
  const cpu = process.cpuUsage(cpu0)
  agent.destroy()
  parentPort.postMessage({ latencies, errors, cpuMs: (cpu.user + cpu.system) / 1000 })
})
`

interface LoadResult { requests: number; errors: number; rps: number; p50: number; p99: number; loadCpuPercent: number }

async function load(spec: { port: number; ca: string; key?: string; cert?: string; method: string; path: string; body?: string; workers: number; concurrency: number; durationMs: number }): Promise<LoadResult> {
  const started = Date.now()
  const results = await Promise.all(
    Array.from({ length: spec.workers }, () =>
      new Promise<{ latencies: number[]; errors: number; cpuMs: number }>((resolve, reject) => {
        const w = new Worker(workerSource, { eval: true, workerData: spec })
        w.once('message', resolve)
        w.once('error', reject)
      }),
    ),
  )
  const elapsed = (Date.now() - started) / 1000
  const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b)
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0
  const cpuMs = results.reduce((s, r) => s + r.cpuMs, 0)
  return { requests: latencies.length, errors: results.reduce((s, r) => s + r.errors, 0), rps: Math.round(latencies.length / elapsed), p50: round(pct(50)), p99: round(pct(99)), loadCpuPercent: Math.round((cpuMs / 1000 / elapsed) * 100) }
}

const round = (n: number) => Math.round(n * 100) / 100

export async function run(opts: { json: boolean }): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-bench-api-'))
  const config = loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir, KENNEL_API_PORT: '0', KENNEL_DEVICE_API_LIMITS: '1000000000/minute', KENNEL_LOGIN_FAILURE_LIMIT: '1000', KENNEL_LOG_LEVEL: 'silent' })
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  const ca = await loadDeviceCa(config)
  const metrics = new ApiMetrics()
  const app = await buildApi({ config, store, masterKey: loadMasterKey(config), ca, notifyDevice: () => undefined, metrics })
  const server = await listenApi(app, { config, tls: await loadServerTls(config, ca), trustedCaPem: ca.trustedPem, store, metrics })
  try {
    await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'bench@example.org', password: PASSWORD } })
    const token = (await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'bench@example.org', password: PASSWORD } })).json().token as string
    const auth = { authorization: `Bearer ${token}` }
    const householdId = (await app.inject({ method: 'POST', url: '/v1/households', headers: auth })).json().householdId as string
    const toy = await enrollDevice({ store, ca, config, actor: 'cli:bench' }, 'bench-toy')
    await app.inject({ method: 'POST', url: `/v1/households/${householdId}/devices`, headers: auth, payload: { claimCode: toy.claimCode } })
    const rec = (await app.inject({ method: 'POST', url: `/v1/households/${householdId}/recordings`, headers: auth, payload: { deviceId: 'bench-toy', contentType: 'audio/ogg', bytes: 4 } })).json()
    const u = new URL(rec.url)
    await app.inject({ method: 'PUT', url: u.pathname + u.search, headers: rec.headers, payload: Buffer.from('woof') })
    await app.inject({ method: 'POST', url: `/v1/recordings/${rec.recordingId}/complete`, headers: auth })

    const base = { port: server.port, ca: ca.trustedPem, workers: 2, durationMs: 5000 }
    const cpu0 = process.cpuUsage()
    const t0 = Date.now()
    const presign = await load({ ...base, key: toy.keyPem, cert: toy.certPem, method: 'GET', path: `/v1/device/recordings/${rec.recordingId}/download-url`, concurrency: 16 })
    const serverCpu = process.cpuUsage(cpu0)
    const serverCpuPercent = Math.round(((serverCpu.user + serverCpu.system) / 1000 / (Date.now() - t0)) * 100)
    const login = await load({ ...base, method: 'POST', path: '/v1/sessions', body: JSON.stringify({ email: 'bench@example.org', password: PASSWORD }), workers: 1, concurrency: 8, durationMs: 4000 })
    const result = {
      presignRps: presign.rps,
      presignP50Ms: presign.p50,
      presignP99Ms: presign.p99,
      presignErrors: presign.errors,
      presignServerCpuPercent: serverCpuPercent,
      presignLoadCpuPercent: presign.loadCpuPercent,
      loginRps: login.rps,
      loginP50Ms: login.p50,
      loginP99Ms: login.p99,
      loginErrors: login.errors,
      cpus: os.cpus().length,
      targets: { presignRps: 5000, presignP99Ms: 20 },
    }
    if (!opts.json) {
      const rows: Array<[string, string]> = [
        ['presign (device download-url, mTLS keep-alive)', `${presign.rps} req/s  p50 ${presign.p50} ms  p99 ${presign.p99} ms  errors ${presign.errors}`],
        ['  server CPU / load-generator CPU', `${serverCpuPercent}% / ${presign.loadCpuPercent}% (of one core; ${os.cpus().length} cores)`],
        ['login (argon2id 64 MiB, t=3)', `${login.rps} req/s  p50 ${login.p50} ms  p99 ${login.p99} ms  errors ${login.errors}`],
        ['targets', 'presign ≥ 5000 req/s, p99 ≤ 20 ms'],
      ]
      for (const [k, v] of rows) process.stdout.write(`${k.padEnd(48)} ${v}\n`)
    }
    return result
  } finally {
    await server.close()
    await store.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const json = process.argv.includes('--json')
  const r = await run({ json })
  if (json) process.stdout.write(`${JSON.stringify(r)}\n`)
}
