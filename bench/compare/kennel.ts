import { type ChildProcess, spawn } from 'node:child_process'
import fs from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { type BrokerUnderTest, cleanEnv, freePort, OutputTail, stopChild } from './subject.ts'
import { kennelEnv, type PreparedData } from './toys.ts'

// kennel as `npm start` runs it: the compiled `node dist/bin/kennel.js start` (built by `npm
// install`; from the sources through tsx, `bin/kennel.js`, when there is no build) on a fresh copy of the prepared
// data directory (embedded store, every projection, events on, log level info), on free loopback
// ports. Only the MQTT rate limits are raised, so that the bench's load is measured rather than
// refused (R6 would otherwise allow 10 connects per toy per minute and 100 publishes per second).

const COMPILED_BIN = fileURLToPath(new URL('../../dist/bin/kennel.js', import.meta.url))
// KENNEL_BENCH_KENNEL: another checkout's bin/kennel.js (or dist/bin/kennel.js), to measure its code with this bench
const KENNEL_BIN =
  process.env.KENNEL_BENCH_KENNEL !== undefined
    ? path.resolve(process.env.KENNEL_BENCH_KENNEL)
    : fs.existsSync(COMPILED_BIN)
      ? COMPILED_BIN
      : fileURLToPath(new URL('../../bin/kennel.js', import.meta.url))
const UNLIMITED = '1000000000/second'
const RAISED_LIMITS = {
  KENNEL_MQTT_CONNECT_LIMITS: UNLIMITED,
  KENNEL_MQTT_CONNECT_IP_LIMITS: UNLIMITED,
  KENNEL_MQTT_PUBLISH_LIMITS: UNLIMITED,
  KENNEL_MQTT_BYTE_LIMITS: UNLIMITED,
}
const START_TIMEOUT_MS = 180_000

export class KennelUnderTest implements BrokerUnderTest {
  readonly name = 'kennel'
  port = 0
  private apiPort = 0
  private child: ChildProcess | undefined
  private dataDir = ''
  private token = ''
  private runs = 0
  private readonly agent: https.Agent

  constructor(
    private readonly data: PreparedData,
    private readonly runDir: string,
  ) {
    this.agent = new https.Agent({ keepAlive: true, ca: data.ca.trustedPem, servername: 'localhost' })
  }

  get pid(): number {
    return this.child?.pid ?? 0
  }

  async start(): Promise<void> {
    this.dataDir = path.join(this.runDir, `kennel-${this.runs++}`)
    fs.cpSync(this.data.templateDir, this.dataDir, { recursive: true })
    const [mqtt, api, metrics] = [await freePort(), await freePort(), await freePort()]
    const env = {
      ...cleanEnv(),
      ...kennelEnv(this.dataDir),
      ...RAISED_LIMITS,
      KENNEL_MQTT_PORT: String(mqtt),
      KENNEL_API_PORT: String(api),
      KENNEL_METRICS_PORT: String(metrics),
      KENNEL_LOG_LEVEL: 'info',
    }
    // KENNEL_BENCH_CPU_PROFILE=<dir>: a V8 CPU profile of each kennel run, written there when it
    // stops; KENNEL_BENCH_NODE_FLAGS: more flags for kennel's node (a heap profile, a GC setting)
    const profile = process.env.KENNEL_BENCH_CPU_PROFILE
    const flags = [
      ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profile)}`] : []),
      ...(process.env.KENNEL_BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? []),
    ]
    const child = spawn(process.execPath, [...flags, KENNEL_BIN, 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    const tail = new OutputTail()
    child.stdout!.on('data', (b: Buffer) => tail.push(b))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`kennel did not start within ${START_TIMEOUT_MS / 1000} s:\n${tail}`)),
        START_TIMEOUT_MS,
      )
      child.stderr!.on('data', (b: Buffer) => {
        tail.push(b)
        if (b.toString().includes('kennel is running')) clearTimeout(timer), resolve()
      })
      child.once(
        'exit',
        (code, signal) => (
          clearTimeout(timer), reject(new Error(`kennel exited (${code ?? signal}) while starting:\n${tail}`))
        ),
      )
    })
    this.port = mqtt
    this.apiPort = api
    const session = await this.request('POST', '/v1/sessions', {
      email: this.data.ops.email,
      password: this.data.ops.password,
    })
    this.token = session.token as string
  }

  /** ops revokes the toy through the API (DeviceRevoked appended; the broker closes its session) */
  async revoke(deviceId: string): Promise<void> {
    await this.request('POST', `/v1/ops/devices/${deviceId}/revoke`, { reason: 'bench: revocation latency' })
  }

  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child, 30_000)
    this.child = undefined
    this.agent.destroy()
    fs.rmSync(this.dataDir, { recursive: true, force: true })
  }

  private request(method: string, url: string, body: unknown): Promise<Record<string, unknown>> {
    const payload = JSON.stringify(body)
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: this.apiPort,
          method,
          path: url,
          agent: this.agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
            ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString()
            if ((res.statusCode ?? 500) >= 300) reject(new Error(`${method} ${url}: ${res.statusCode} ${text}`))
            else resolve(JSON.parse(text) as Record<string, unknown>)
          })
        },
      )
      req.once('error', reject)
      req.end(payload)
    })
  }
}
