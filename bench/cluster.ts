import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import pg from 'pg'
import { findVerificationToken } from '../api/accounts/tokens.ts'
import { grantRole } from '../bin/commands/account.ts'
import { call } from '../bin/commands/demo.ts'
import { mintFleet, runFleet } from '../devices/simulator/fleet.ts'
import { loadConfig } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import { outboxDir, readOutbox } from '../infra/mail/outbox.ts'
import { type ClusterNode, clusterMaterial, nodeMetric, startClusterNode } from './cluster/nodes.ts'
import type { BenchOptions } from './run.ts'

// `npm run bench -- cluster [--toys N] [--rate R] [--duration S] [--revocations K] [--json]`:
// two broker nodes (broker,api) and one projector on this machine, on PostgreSQL and Redis
// (KENNEL_BENCH_PG_URL, KENNEL_BENCH_REDIS_URL; the local servers by default), driven by the
// `kennel simulate` fleet: mTLS connects/s spread over both brokers, QoS 1 msgs/s with PUBACK
// latency, revocation through one node's API → session closed on the other (p50/p99), and the
// projector's lag sampled every 250 ms (p99). The fleet runs in this process: its CPU is
// reported, and a figure it limited says so.

function option(args: string[], name: string, fallback: number): number {
  const at = args.indexOf(name)
  if (at < 0) return fallback
  const n = Number(args[at + 1])
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} needs a positive number`)
  return n
}

const percentile = (xs: number[], p: number): number | null => {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 10) / 10
}

const api = (node: ClusterNode, ca: string, method: string, p: string, body?: unknown, token?: string) =>
  call(node.ports.api!, ca, method, p, body, token)

export async function run(opts: BenchOptions): Promise<Record<string, unknown>> {
  const toys = option(opts.args, '--toys', 200)
  const rate = option(opts.args, '--rate', 20_000)
  const durationS = option(opts.args, '--duration', 15)
  const revocations = option(opts.args, '--revocations', 20)
  const pgUrl =
    process.env.KENNEL_BENCH_PG_URL ?? process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  const redisUrl = process.env.KENNEL_BENCH_REDIS_URL ?? process.env.KENNEL_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
  const say = (s: string): void => void process.stderr.write(`bench cluster: ${s}\n`)

  const schema = `kbench_${randomBytes(4).toString('hex')}`
  const url = new URL(pgUrl)
  url.searchParams.set('schema', schema)
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-bench-cluster-'))
  const teardowns: Array<() => unknown> = []
  const t = { teardown: (fn: () => unknown) => void teardowns.unshift(fn) }
  try {
    const material = await clusterMaterial(root, url.toString(), redisUrl, {
      KENNEL_MQTT_CONNECT_LIMITS: '100000/minute',
      KENNEL_MQTT_CONNECT_IP_LIMITS: '1000000/minute',
      KENNEL_MQTT_PUBLISH_LIMITS: '1000000/second',
      KENNEL_MQTT_BYTE_LIMITS: '1000000000/second',
      KENNEL_UNAUTHENTICATED_PER_IP: '100000',
    })
    const caPem = material.ca.trustedPem
    const [b1, b2, projector] = [
      await startClusterNode(t, material, root, 'broker-1', 'broker,api'),
      await startClusterNode(t, material, root, 'broker-2', 'broker,api'),
      await startClusterNode(t, material, root, 'projector', 'projector'),
    ]
    say(
      `nodes up: broker-1 mqtt :${b1.ports.mqtt} api :${b1.ports.api}, broker-2 mqtt :${b2.ports.mqtt}, projector metrics :${projector.ports.metrics}`,
    )

    const store = await openEventStore(material.config.eventStoreUrl, { environment: 'test' })
    t.teardown(() => store.close())
    const benchConfig = loadConfig({
      ...material.env,
      KENNEL_DATA_DIR: path.join(root, 'fleet'),
      KENNEL_LOG_LEVEL: 'silent',
    })
    const { fleet } = await mintFleet(
      { config: benchConfig, store, ca: material.ca, actor: 'cli:bench' },
      toys + revocations,
      say,
    )

    // load: the fleet over both brokers, QoS 1, the projector's lag sampled meanwhile
    const lagEvents: number[] = []
    const lagSeconds: number[] = []
    const sampler = setInterval(() => {
      void nodeMetric(projector, 'kennel_projection_lag_events').then(
        (v) => v !== undefined && lagEvents.push(v),
        () => undefined,
      )
      void nodeMetric(projector, 'kennel_projection_lag_seconds').then(
        (v) => v !== undefined && lagSeconds.push(v),
        () => undefined,
      )
    }, 250)
    const cpu0 = process.cpuUsage()
    const w0 = performance.now()
    const report = await runFleet(
      { ...fleet, toys: fleet.toys.slice(0, toys) },
      caPem,
      {
        toys,
        rate,
        durationS,
        brokers: [`mqtts://localhost:${b1.ports.mqtt}`, `mqtts://localhost:${b2.ports.mqtt}`],
        qos: 1,
        paired: 0,
        recordingsPerMinute: 0,
        recordingBytes: 1,
        connectConcurrency: 64,
        window: 10,
      },
      say,
    )
    const cpu = process.cpuUsage(cpu0)
    const generatorCpu = (cpu.user + cpu.system) / 1000 / (performance.now() - w0)
    clearInterval(sampler)

    // revocation through broker-1's API of toys connected to broker-2
    const email = `ops-${randomBytes(3).toString('hex')}@bench.example.org`
    const password = 'violet-Harbour-43-quiet-Lantern'
    await api(b1, caPem, 'POST', '/v1/accounts', { email, password })
    const mail = readOutbox(outboxDir(b1.dir))
      .filter((m) => m.headers.to === email)
      .at(-1)
    await api(b1, caPem, 'POST', '/v1/accounts/verify', { token: findVerificationToken(mail?.text ?? '') })
    await grantRole({ config: benchConfig, store, actor: 'cli:bench' }, email, 'ops')
    const token = (await api(b1, caPem, 'POST', '/v1/sessions', { email, password })).json.token as string
    const revocationMs: number[] = []
    for (const toy of fleet.toys.slice(toys, toys + revocations)) {
      const client = mqtt.connect(`mqtts://localhost:${b2.ports.mqtt}`, {
        key: toy.keyPem,
        cert: toy.certPem,
        ca: caPem,
        clientId: toy.id,
        protocolVersion: 4,
        reconnectPeriod: 0,
      })
      client.on('error', () => undefined)
      await new Promise<void>(
        (resolve, reject) => (
          client.once('connect', () => resolve()),
          client.once('close', () => reject(new Error(`${toy.id} could not connect to broker-2`)))
        ),
      )
      const closed = new Promise<number>((resolve) => client.once('close', () => resolve(performance.now())))
      const started = performance.now()
      const res = await api(b1, caPem, 'POST', `/v1/ops/devices/${toy.id}/revoke`, { reason: 'bench' }, token)
      if (res.status !== 200) throw new Error(`revoking ${toy.id} failed: ${res.status} ${JSON.stringify(res.json)}`)
      revocationMs.push((await closed) - started)
    }

    const result = {
      nodes: { brokers: 2, projectors: 1 },
      toys: report.connected,
      connectsPerSec: report.connectsPerSec,
      qos1MsgsPerSec: report.msgsPerSec,
      qos1LatencyP50Ms: report.latencyP50Ms,
      qos1LatencyP99Ms: report.latencyP99Ms,
      unacknowledged: report.unacknowledged,
      offeredRate: rate,
      skippedWindowFull: report.skipped,
      revocationP50Ms: percentile(revocationMs, 50),
      revocationP99Ms: percentile(revocationMs, 99),
      projectorLagP99Events: percentile(lagEvents, 99),
      projectorLagP99Seconds: percentile(lagSeconds, 99),
      generatorCpu: Math.round(generatorCpu * 100) / 100,
      generatorLimited: generatorCpu > 0.9,
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
    }
    console.log(
      [
        `cluster: 2 broker nodes (broker,api) + 1 projector, PostgreSQL schema ${schema}, Redis`,
        `  connects/s          ${result.connectsPerSec} (${result.toys} toys over both brokers)`,
        `  QoS 1 msgs/s        ${result.qos1MsgsPerSec} (offered ${rate}/s, window 10 per toy; PUBACK p50 ${result.qos1LatencyP50Ms} ms, p99 ${result.qos1LatencyP99Ms} ms; ${result.unacknowledged} without PUBACK)`,
        `  revocation          p50 ${result.revocationP50Ms} ms, p99 ${result.revocationP99Ms} ms (API on broker-1 → session on broker-2 closed, ${revocationMs.length} toys)`,
        `  projector lag p99   ${result.projectorLagP99Events} events, ${result.projectorLagP99Seconds} s`,
        `  generator CPU       ${Math.round(generatorCpu * 100)}% of one core${result.generatorLimited ? ' — the generator limited these figures' : ''}`,
      ].join('\n'),
    )
    return result
  } finally {
    for (const fn of teardowns) await fn()
    const admin = new pg.Client({ connectionString: pgUrl })
    await admin
      .connect()
      .then(() => admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
      .finally(() => admin.end())
      .catch(() => undefined)
    fs.rmSync(root, { recursive: true, force: true })
  }
}
