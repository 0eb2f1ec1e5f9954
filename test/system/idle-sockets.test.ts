import { type ChildProcess, spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import mqtt from 'mqtt'
import t from 'tap'
import { loadDeviceCa } from '../../devices/ca.ts'
import { enrollDevice, type EnrolledDevice } from '../../devices/enroll.ts'
import { loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'

// R9 (availability): sockets that never speak must not hold kennel's file descriptors. `kennel
// start` runs in a child with a low descriptor limit (256) while the test opens a few hundred
// idle sockets from other loopback addresses (127.0.0.2-5; the toy uses 127.0.0.1): they are
// closed by the server's deadlines, the ones over a source's cap are refused on accept, and a
// real toy and /healthz still get through.

const bin = path.resolve('bin/kennel.js')
const LOOPBACK = '127.0.0.1'

interface Child {
  pid: number
  ports: { mqtt: number; api: number; metrics: number }
  /** pino JSON lines so far */
  logs(): Array<Record<string, unknown>>
  stop(): Promise<void>
}

async function enrolledToy(dir: string): Promise<EnrolledDevice> {
  const config = loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir })
  const store = await openEventStore(config.eventStoreUrl, { environment: 'test' })
  try {
    return await enrollDevice({ store, ca: await loadDeviceCa(config), config, actor: 'cli:test' }, 'toy-1')
  } finally {
    await store.close()
  }
}

/** `kennel start` under `prlimit --nofile=<soft>:<hard>`, on port 0, until it prints its ports */
async function startKennel(
  t: { teardown(fn: () => unknown): void },
  dir: string,
  nofile: string,
  env: Record<string, string>,
): Promise<Child> {
  const child: ChildProcess = spawn('prlimit', [`--nofile=${nofile}`, process.execPath, bin, 'start'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: dir,
      USER: 'tester',
      KENNEL_ENV: 'test',
      KENNEL_DATA_DIR: dir,
      KENNEL_MQTT_PORT: '0',
      KENNEL_API_PORT: '0',
      KENNEL_METRICS_PORT: '0',
      KENNEL_LOG_LEVEL: 'info',
      ...env,
    },
  })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d) => (stdout += d))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  }
  t.teardown(stop)
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      stderr += d
      if (stderr.includes('Stop with Ctrl-C.')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`kennel start exited with ${code}: ${stderr}`)))
  })
  const port = (re: RegExp): number => Number(re.exec(stderr)?.[1])
  return {
    pid: child.pid!,
    ports: {
      mqtt: port(/mqtts:\/\/localhost:(\d+)/),
      api: port(/https:\/\/localhost:(\d+)/),
      metrics: port(/http:\/\/127\.0\.0\.1:(\d+)\/metrics/),
    },
    logs: () =>
      stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    stop,
  }
}

async function metric(port: number, name: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get({ host: LOOPBACK, port, path: '/metrics' }, (res) => {
        let body = ''
        res.on('data', (d) => (body += d))
        res.on('end', () => resolve(body))
      })
      .on('error', reject)
  })
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? 0 : Number(line.split(' ')[1])
}

/** polls until `check` holds; fails the test after a generous deadline, never on speed */
async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  state: () => unknown = () => undefined,
): Promise<void> {
  const end = Date.now() + 90_000
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`gave up waiting: ${what} (${JSON.stringify(state())})`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

interface Idle {
  closed: boolean
  /** the TLS handshake completed */
  secured: boolean
}

/** a socket the test never closes: silent (TCP only), TLS then nothing, or TLS then half a request head */
function idle(
  port: number,
  from: string,
  kind: 'silent' | 'tls' | 'partial-request',
  options: tls.ConnectionOptions = {},
): Idle {
  const state: Idle = { closed: false, secured: false }
  const tcp = net.connect({ port, host: LOOPBACK, localAddress: from })
  const socket = kind === 'silent' ? tcp : tls.connect({ socket: tcp, servername: 'localhost', ...options })
  socket.on('secureConnect', () => {
    state.secured = true
    if (kind === 'partial-request') socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n')
  })
  socket.on('error', () => undefined)
  socket.on('close', () => (state.closed = true))
  return state
}

async function toyConnects(port: number, toy: EnrolledDevice): Promise<void> {
  const client = await mqtt.connectAsync({
    protocol: 'mqtts',
    host: LOOPBACK,
    port,
    servername: 'localhost',
    key: toy.keyPem,
    cert: toy.certPem,
    ca: toy.caPem,
    clientId: toy.deviceId,
    reconnectPeriod: 0,
  })
  await client.publishAsync(`toys/${toy.deviceId}/telemetry`, 'battery=97', { qos: 1 })
  await client.endAsync()
}

function healthz(port: number, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: LOOPBACK, port, path: '/healthz', servername: 'localhost', ca }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      .on('error', reject)
  })
}

t.test('sockets that never authenticate are closed by the deadlines from accept, at 256 descriptors', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-idle-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const toy = await enrolledToy(dir)
  // short enough for the test, long enough for a real handshake and CONNECT on a busy machine
  const kennel = await startKennel(t, dir, '256:256', {
    KENNEL_TLS_HANDSHAKE_TIMEOUT_SECONDS: '8',
    KENNEL_CONNECT_TIMEOUT_SECONDS: '5',
  })
  const { mqtt: mqttPort, api } = kennel.ports

  // two waves: without the deadlines the first alone leaves too few descriptors for the second
  for (const wave of [1, 2]) {
    const sockets = {
      mqttSilent: Array.from({ length: 50 }, () => idle(mqttPort, '127.0.0.2', 'silent')),
      mqttNoConnect: Array.from({ length: 25 }, () =>
        idle(mqttPort, '127.0.0.3', 'tls', { key: toy.keyPem, cert: toy.certPem, ca: toy.caPem }),
      ),
      apiSilent: Array.from({ length: 50 }, () => idle(api, '127.0.0.4', 'silent')),
      apiNoRequest: Array.from({ length: 25 }, () => idle(api, '127.0.0.5', 'tls', { ca: toy.caPem })),
      apiPartial: Array.from({ length: 10 }, () => idle(api, '127.0.0.5', 'partial-request', { ca: toy.caPem })),
    }
    const all = Object.values(sockets).flat()
    const open = (): Record<string, number> =>
      Object.fromEntries(Object.entries(sockets).map(([kind, list]) => [kind, list.filter((s) => !s.closed).length]))
    await until(`wave ${wave}: every idle socket closed by the server`, () => all.every((s) => s.closed), open)
    t.ok(
      sockets.mqttNoConnect.every((s) => s.secured) && sockets.apiNoRequest.every((s) => s.secured),
      `wave ${wave}: the TLS sockets finished their handshake before they were closed`,
    )
  }
  t.equal(
    await metric(kennel.ports.metrics, 'kennel_mqtt_connect_timeouts_total{phase="handshake"}'),
    100,
    'MQTT: silent sockets closed by the handshake deadline',
  )
  t.equal(
    await metric(kennel.ports.metrics, 'kennel_mqtt_connect_timeouts_total{phase="connect"}'),
    50,
    'MQTT: TLS without CONNECT closed by the connect deadline',
  )
  t.equal(
    await metric(kennel.ports.metrics, 'kennel_api_connect_timeouts_total{phase="handshake"}'),
    100,
    'API: silent sockets closed by the handshake deadline',
  )
  t.equal(
    await metric(kennel.ports.metrics, 'kennel_api_connect_timeouts_total{phase="connect"}'),
    70,
    'API: TLS without a (complete) first request closed by the connect deadline',
  )
  t.equal(await metric(kennel.ports.metrics, 'kennel_mqtt_unauthenticated_connections'), 0)
  t.equal(await metric(kennel.ports.metrics, 'kennel_api_unauthenticated_connections'), 0)

  await toyConnects(mqttPort, toy)
  t.equal(await healthz(api, toy.caPem), 200, '/healthz answers')
})

t.test('over its cap a source is refused on accept, before TLS, while a toy and /healthz get through', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-cap-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const toy = await enrolledToy(dir)
  // deadlines far beyond the test: every close it sees is a refusal on accept
  const kennel = await startKennel(t, dir, '256:256', {
    KENNEL_TLS_HANDSHAKE_TIMEOUT_SECONDS: '300',
    KENNEL_CONNECT_TIMEOUT_SECONDS: '300',
    KENNEL_UNAUTHENTICATED_PER_IP: '40',
  })
  const { mqtt: mqttPort, api, metrics } = kennel.ports

  const attack = {
    mqtt: Array.from({ length: 300 }, () => idle(mqttPort, '127.0.0.2', 'silent')),
    api: Array.from({ length: 300 }, () => idle(api, '127.0.0.2', 'tls', { ca: toy.caPem })),
  }
  const refused = async (): Promise<number[]> => [
    await metric(metrics, 'kennel_mqtt_unauthenticated_refused_total'),
    await metric(metrics, 'kennel_api_unauthenticated_refused_total'),
  ]
  let seen: number[] = []
  await until(
    'every over-cap connection refused',
    async () => (seen = await refused()).every((n) => n === 260),
    () => ({ refused: seen }),
  )
  await until(
    'the refused sockets closed',
    () => attack.mqtt.filter((s) => s.closed).length === 260 && attack.api.filter((s) => s.closed).length === 260,
  )
  t.equal(attack.mqtt.filter((s) => !s.closed).length, 40, 'MQTT: the cap stays open')
  t.equal(attack.api.filter((s) => !s.closed).length, 40, 'API: the cap stays open')
  t.equal(attack.api.filter((s) => s.closed && s.secured).length, 0, 'no refused API socket got a TLS handshake')
  t.equal(await metric(metrics, 'kennel_mqtt_unauthenticated_connections'), 40)

  await toyConnects(mqttPort, toy)
  t.equal(await healthz(api, toy.caPem), 200, '/healthz answers from another address')

  await kennel.stop()
  t.ok(attack.mqtt.every((s) => s.closed) && attack.api.every((s) => s.closed), 'stopping closes the held sockets')
  const store = await openEventStore(loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir }).eventStoreUrl, {
    environment: 'test',
  })
  t.teardown(() => store.close())
  const capped = await store.readAll({ filter: { types: ['ConnectionCapExceeded'] } })
  for (const listener of ['mqtt', 'api']) {
    const events = capped.filter((e) => (e.data as { listener: string }).listener === listener)
    t.match(
      events[0],
      {
        stream: /^security-/,
        data: { ip: '127.0.0.2', source: '127.0.0.2', cap: 40, refusals: 1 },
        metadata: { actor: 'anonymous', sourceIp: '127.0.0.2' },
      },
      `${listener}: the first refusal is recorded at once`,
    )
    t.equal(
      events.reduce((n, e) => n + (e.data as { refusals: number }).refusals, 0),
      260,
      `${listener}: every refusal is counted in the events (the rest folded, written on stop)`,
    )
  }
})

t.test('the descriptor limit is raised to the hard limit and a low one is reported', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-nofile-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const kennel = await startKennel(t, dir, '256:1024', {})
  const limits = fs.readFileSync(`/proc/${kennel.pid}/limits`, 'utf8')
  t.match(limits, /^Max open files\s+1024\s+1024\s/m, 'soft limit raised from 256 to the hard limit')
  const report = kennel.logs().find((l) => typeof l.msg === 'string' && l.msg.startsWith('open-file limit'))
  t.match(
    report,
    { level: 40, soft: 1024, hard: 1024, msg: /LimitNOFILE/ },
    'a warning names the limit and how to raise it',
  )
})
