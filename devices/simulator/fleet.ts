import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import type { DeviceCa } from '../ca.ts'
import { enrollDevice } from '../enroll.ts'
import type { Config } from '../../infra/config.ts'
import { KennelError } from '../../infra/errors.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'

// A fleet of simulated toys for load and soak (`kennel simulate`): toys minted in bulk by the
// development CA, spread round-robin over the broker URLs given, publishing telemetry at a total
// rate, a few of them paired with a household and uploading recordings through the device API,
// each over its own mutual-TLS connection as a real toy would. It reports what it saw: connects,
// acknowledgements and their latency, losses, refusals, recordings.
//
// The toys' keys are generated here (a real toy keeps its key and sends a CSR), so minting is for
// development and test stores only. Credentials are kept in <data dir>/simulator/fleet.json
// (0600) and reused by the next run against the same store and CA: minting costs an argon2id hash
// of each toy's claim code.

export interface FleetToy {
  id: string
  keyPem: string
  certPem: string
  claimCode: string
  paired?: boolean
}

interface FleetFile {
  /** the store and CA the toys were minted for */
  store: string
  ca: string
  toys: FleetToy[]
  /** the simulator's parent account, when toys were paired */
  parent?: { email: string; password: string; householdId: string }
}

const MINT_CONCURRENCY = 4

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')

function fleetFile(config: Config): string {
  return path.join(config.dataDir, 'simulator', 'fleet.json')
}

function readFleet(file: string, store: string, ca: string): FleetFile {
  try {
    const f = JSON.parse(fs.readFileSync(file, 'utf8')) as FleetFile
    if (f.store === store && f.ca === ca && Array.isArray(f.toys)) return f
  } catch {
    // none yet, or unreadable: mint a new fleet
  }
  return { store, ca, toys: [] }
}

function writeFleet(file: string, fleet: FleetFile): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(tmp, JSON.stringify(fleet), { mode: 0o600 })
  fs.renameSync(tmp, file)
}

/** the store's URL without credentials, to tell one store from another */
function storeName(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//')
}

/** Mint (or reuse) `count` toys for the configured store and CA; refused in production. */
export async function mintFleet(
  deps: { config: Config; store: EventStore; ca: DeviceCa; actor: string },
  count: number,
  progress: (s: string) => void = () => undefined,
): Promise<{ fleet: FleetFile; file: string; minted: number }> {
  if (deps.config.env === 'production') {
    throw new KennelError(
      'KENNEL_ERR_DEVELOPMENT_MATERIAL',
      'kennel simulate mints toys whose keys it generates itself: development and test environments only, never production',
    )
  }
  const file = fleetFile(deps.config)
  const fleet = readFleet(file, storeName(deps.config.eventStoreUrl), sha256(deps.ca.trustedPem))
  const tag = fleet.toys[0]?.id.split('-')[1] ?? randomBytes(3).toString('hex')
  let next = fleet.toys.length
  let minted = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: MINT_CONCURRENCY }, async () => {
      while (next < count) {
        const id = `sim-${tag}-${String(next++).padStart(6, '0')}`
        const d = await enrollDevice({ store: deps.store, ca: deps.ca, config: deps.config, actor: deps.actor }, id)
        fleet.toys.push({ id, keyPem: d.keyPem, certPem: d.certPem, claimCode: d.claimCode })
        if (++minted % 100 === 0) progress(`minted ${minted} toys (${Math.round((performance.now() - t0) / 1000)} s)`)
      }
    }),
  )
  fleet.toys.sort((a, b) => a.id.localeCompare(b.id))
  if (minted > 0) writeFleet(file, fleet)
  return { fleet, file, minted }
}

export interface FleetOptions {
  toys: number
  /** telemetry messages per second over the whole fleet */
  rate: number
  durationS: number
  brokers: string[]
  /** the HTTPS API, for pairing and recordings; none: telemetry only */
  api?: string
  qos: 0 | 1
  /** toys paired with the simulator's household, each uploading recordings */
  paired: number
  /** recordings per minute over the paired toys */
  recordingsPerMinute: number
  recordingBytes: number
  /** handshakes in flight while the fleet connects */
  connectConcurrency: number
  /** in-flight publishes per toy before it skips a tick (a broker that cannot keep up) */
  window: number
}

export interface FleetReport {
  toys: number
  brokers: number
  connected: number
  connectFailures: Record<string, number>
  connectSeconds: number
  connectsPerSec: number
  durationS: number
  qos: number
  published: number
  acknowledged: number
  /** publishes without their PUBACK once the run drained (QoS 1) */
  unacknowledged: number
  /** ticks skipped because a toy had `window` publishes in flight */
  skipped: number
  msgsPerSec: number
  latencyP50Ms: number | null
  latencyP99Ms: number | null
  disconnects: number
  recordings: { paired: number; uploaded: number; failed: number; errors: Record<string, number> }
  inboxReceived: number
}

interface Running {
  toy: FleetToy
  client: MqttClient
  inFlight: number
}

function connect(url: string, toy: FleetToy, caPem: string): Promise<MqttClient> {
  const client = mqtt.connect(url, {
    key: toy.keyPem,
    cert: toy.certPem,
    ca: caPem,
    clientId: toy.id,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 30_000,
    clean: true,
  })
  return new Promise((resolve, reject) => {
    client.once('connect', () => {
      client.removeAllListeners('error')
      client.on('error', () => undefined)
      resolve(client)
    })
    client.once('error', (err) => (client.end(true), reject(err)))
    client.once('close', () => reject(new Error('closed before CONNACK')))
  })
}

/** a short name for a failure, to count failures by kind */
function kind(err: unknown): string {
  const e = err as { code?: string | number; message?: string }
  return String(e.code ?? e.message ?? err).slice(0, 60)
}

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

interface HttpAnswer {
  status: number
  // biome-ignore lint/suspicious/noExplicitAny: the fleet reads fields of the API's JSON answers
  json: any
}

function request(
  base: string,
  method: string,
  p: string,
  opts: { ca: string; body?: unknown; raw?: Buffer; token?: string; toy?: FleetToy; headers?: Record<string, string> },
): Promise<HttpAnswer> {
  const url = new URL(p, base)
  const payload = opts.raw ?? (opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body)))
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: opts.ca,
        ...(opts.toy ? { key: opts.toy.keyPem, cert: opts.toy.certPem } : {}),
        headers: {
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          ...opts.headers,
        },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString()
          let json: unknown = {}
          try {
            json = text ? JSON.parse(text) : {}
          } catch {
            json = { text }
          }
          resolve({ status: res.statusCode ?? 0, json })
        })
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}

/**
 * Pair `count` toys of the fleet with the simulator's household: a parent account signed up and
 * confirmed through `confirm` (which returns the verification token of the mail it was sent).
 */
export async function pairFleet(
  fleet: FleetFile,
  count: number,
  api: string,
  caPem: string,
  confirm: (email: string) => Promise<string | undefined>,
): Promise<void> {
  if (count === 0 || fleet.toys.slice(0, count).every((t) => t.paired)) return
  if (!fleet.parent) {
    const email = `simulator-${randomBytes(4).toString('hex')}@simulator.invalid`
    const password = `Sim-${randomBytes(12).toString('base64url')}-fleet`
    const signup = await request(api, 'POST', '/v1/accounts', { ca: caPem, body: { email, password } })
    if (signup.status >= 300)
      throw new KennelError(
        'KENNEL_ERR_VALIDATION',
        `the simulator's parent sign-up was refused: ${signup.status} ${JSON.stringify(signup.json)}`,
      )
    const token = await confirm(email)
    if (!token)
      throw new KennelError(
        'KENNEL_ERR_CONFIG',
        'pairing simulated toys needs the confirmation mail of a parent account: run against a development data dir (mails in <data dir>/outbox), or pass --paired 0',
      )
    const verified = await request(api, 'POST', '/v1/accounts/verify', { ca: caPem, body: { token } })
    if (verified.status !== 200)
      throw new KennelError(
        'KENNEL_ERR_VALIDATION',
        `confirming the simulator's parent failed: ${verified.status} ${JSON.stringify(verified.json)}`,
      )
    const session = await request(api, 'POST', '/v1/sessions', { ca: caPem, body: { email, password } })
    const household = await request(api, 'POST', '/v1/households', {
      ca: caPem,
      token: session.json.token,
      body: { name: 'Simulated household' },
    })
    if (household.status >= 300)
      throw new KennelError(
        'KENNEL_ERR_VALIDATION',
        `creating the simulator's household failed: ${household.status} ${JSON.stringify(household.json)}`,
      )
    fleet.parent = { email, password, householdId: household.json.householdId }
  }
  const session = await request(api, 'POST', '/v1/sessions', {
    ca: caPem,
    body: { email: fleet.parent.email, password: fleet.parent.password },
  })
  if (session.status !== 200)
    throw new KennelError(
      'KENNEL_ERR_LOGIN_FAILED',
      `the simulator's parent cannot log in: ${session.status} ${JSON.stringify(session.json)}`,
    )
  for (const toy of fleet.toys.slice(0, count)) {
    if (toy.paired) continue
    const paired = await request(api, 'POST', `/v1/households/${fleet.parent.householdId}/devices`, {
      ca: caPem,
      token: session.json.token,
      body: { claimCode: toy.claimCode },
    })
    if (paired.status >= 300 && paired.json?.error?.code !== 'KENNEL_ERR_CLAIM_CODE_USED')
      throw new KennelError(
        'KENNEL_ERR_VALIDATION',
        `pairing ${toy.id} failed: ${paired.status} ${JSON.stringify(paired.json)}`,
      )
    toy.paired = true
  }
}

/** one recording from a toy: upload URL, PUT, complete (the device API, over the toy's mTLS) */
async function uploadRecording(api: string, caPem: string, toy: FleetToy, bytes: number): Promise<void> {
  const content = randomBytes(bytes)
  const created = await request(api, 'POST', '/v1/device/recordings', {
    ca: caPem,
    toy,
    body: { contentType: 'audio/ogg', bytes, sha256: sha256(content) },
  })
  if (created.status !== 201)
    throw Object.assign(new Error('create refused'), { code: created.json?.error?.code ?? created.status })
  const put = await request(api, created.json.method ?? 'PUT', created.json.uploadUrl, {
    ca: caPem,
    raw: content,
    headers: { 'content-type': 'audio/ogg', ...(created.json.headers ?? {}) },
  })
  if (put.status >= 300) throw Object.assign(new Error('upload refused'), { code: put.json?.error?.code ?? put.status })
  const done = await request(api, 'POST', `/v1/device/recordings/${created.json.recordingId}/complete`, {
    ca: caPem,
    toy,
  })
  if (done.status !== 200)
    throw Object.assign(new Error('complete refused'), { code: done.json?.error?.code ?? done.status })
}

/** Connect the fleet, run it for the duration, drain, disconnect, and say what happened. */
export async function runFleet(
  fleet: FleetFile,
  caPem: string,
  o: FleetOptions,
  progress: (s: string) => void = () => undefined,
): Promise<FleetReport> {
  const toys = fleet.toys.slice(0, o.toys)
  const connectFailures: Record<string, number> = {}
  const running: Running[] = []
  let disconnects = 0
  let inboxReceived = 0
  const c0 = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(o.connectConcurrency, toys.length) }, async () => {
      while (next < toys.length) {
        const i = next++
        const toy = toys[i]!
        try {
          const client = await connect(o.brokers[i % o.brokers.length]!, toy, caPem)
          client.on('close', () => disconnects++)
          client.on('message', () => inboxReceived++)
          client.subscribe(`toys/${toy.id}/inbox/#`, { qos: 1 })
          running.push({ toy, client, inFlight: 0 })
        } catch (err) {
          connectFailures[kind(err)] = (connectFailures[kind(err)] ?? 0) + 1
        }
      }
    }),
  )
  const connectSeconds = (performance.now() - c0) / 1000
  disconnects = 0
  progress(`${running.length} of ${toys.length} toys connected in ${connectSeconds.toFixed(1)} s`)

  const latencies: number[] = []
  let published = 0
  let acknowledged = 0
  let skipped = 0
  let seq = 0
  let credit = 0
  let cursor = 0
  const recordings = { paired: 0, uploaded: 0, failed: 0, errors: {} as Record<string, number> }
  const pairedToys = o.api ? running.filter((r) => r.toy.paired).map((r) => r.toy) : []
  recordings.paired = pairedToys.length
  const uploads = new Set<Promise<void>>()
  let recordingCredit = 0

  const TICK_MS = 20
  const r0 = performance.now()
  let last = r0
  const ticker = setInterval(() => {
    const now = performance.now()
    credit += (o.rate * (now - last)) / 1000
    recordingCredit += (o.recordingsPerMinute * (now - last)) / 60_000
    last = now
    const open = running.filter((r) => r.client.connected)
    for (; credit >= 1 && open.length > 0; credit--) {
      const r = open[cursor++ % open.length]!
      if (o.qos === 1 && r.inFlight >= o.window) {
        skipped++
        continue
      }
      const payload = JSON.stringify({ seq: seq++, battery: 100 - (seq % 100), at: Date.now() })
      const sent = performance.now()
      published++
      r.inFlight++
      r.client.publish(`toys/${r.toy.id}/telemetry`, payload, { qos: o.qos }, (err) => {
        r.inFlight--
        if (err) return
        acknowledged++
        if (o.qos === 1) latencies.push(performance.now() - sent)
      })
    }
    if (credit > o.rate) credit = o.rate // a stalled loop does not come back with a burst
    for (; recordingCredit >= 1 && pairedToys.length > 0 && o.api; recordingCredit--) {
      const toy = pairedToys[Math.floor(Math.random() * pairedToys.length)]!
      const p = uploadRecording(o.api, caPem, toy, o.recordingBytes).then(
        () => void recordings.uploaded++,
        (err: unknown) => {
          recordings.failed++
          recordings.errors[kind(err)] = (recordings.errors[kind(err)] ?? 0) + 1
        },
      )
      uploads.add(p)
      void p.finally(() => uploads.delete(p))
    }
  }, TICK_MS)
  const progressTimer = setInterval(
    () =>
      progress(
        `${Math.round((performance.now() - r0) / 1000)} s: ${published} published, ${acknowledged} acknowledged, ${recordings.uploaded} recordings`,
      ),
    5000,
  )
  await new Promise((r) => setTimeout(r, o.durationS * 1000))
  clearInterval(ticker)
  clearInterval(progressTimer)
  const elapsed = (performance.now() - r0) / 1000
  // drain: what was sent gets up to 10 s for its PUBACK
  const deadline = Date.now() + 10_000
  while ((running.some((r) => r.inFlight > 0) || uploads.size > 0) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20))
  const disconnectsDuringRun = disconnects
  await Promise.all(running.map((r) => r.client.endAsync(true)))

  latencies.sort((a, b) => a - b)
  const round = (x: number | null): number | null => (x === null ? null : Math.round(x * 10) / 10)
  return {
    toys: toys.length,
    brokers: o.brokers.length,
    connected: running.length,
    connectFailures,
    connectSeconds: Math.round(connectSeconds * 100) / 100,
    connectsPerSec: Math.round(running.length / connectSeconds),
    durationS: Math.round(elapsed * 10) / 10,
    qos: o.qos,
    published,
    acknowledged,
    unacknowledged: o.qos === 1 ? published - acknowledged : 0,
    skipped,
    msgsPerSec: Math.round(acknowledged / elapsed),
    latencyP50Ms: round(percentile(latencies, 50)),
    latencyP99Ms: round(percentile(latencies, 99)),
    disconnects: disconnectsDuringRun,
    recordings,
    inboxReceived,
  }
}

export { writeFleet, fleetFile }
