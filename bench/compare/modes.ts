import type { GeneratorCpu, LoadPool } from '../loadgen/pool.ts'
import { wallNow } from '../loadgen/session.ts'
import { KennelUnderTest } from './kennel.ts'
import type { MosquittoUnderTest } from './mosquitto.ts'
import { cpuMs, machineBusyMs, processTree, treeRssKB } from './proc.ts'
import type { BrokerUnderTest } from './subject.ts'
import type { Toy } from './toys.ts'

// The measurements, each run against one started broker with the same load whichever it is.

export const MODES = ['idle', 'connects', 'qos0', 'qos1', 'revocation'] as const
export type Mode = (typeof MODES)[number]

export interface Shape {
  durationS: number
  warmupS: number
  /** idle connections held for the memory figures */
  idle: number
  /** handshakes in flight in the connects mode */
  inFlight: number
  echoToys: number
  window: number
  revocations: number
}

/** the toys each mode uses; revoked toys are never used by another mode */
export interface Cast {
  idle: Toy[]
  echo: Toy[]
  revoked: Toy[]
  /** Mosquitto: revoked in the CRL with a SIGHUP only, to show what that does */
  reloadProbe: Toy
  bystander: Toy
}

export interface ConnectsFigures {
  perSecond: number
  p50Ms: number
  p99Ms: number
  failures: Record<string, number>
  generator: GeneratorCpu
  brokerCpuPct: number
  otherCpuPct: number
}

export interface EchoFigures {
  perSecond: number
  p50Ms: number
  p99Ms: number
  sent: number
  acked: number
  uniqueReceived: number
  duplicates: number
  lost: number
  stalled: number
  generator: GeneratorCpu
  brokerCpuPct: number
  otherCpuPct: number
}

export interface IdleFigures {
  rssIdleMB: number
  rssWithIdleMB: number
  rssPerConnKB: number
  held: number
  refused: Record<string, number>
  generator: GeneratorCpu
}

export interface RevocationFigures {
  /** what was done to close a revoked toy's session */
  how: string
  samples: number[]
  p50Ms: number
  p99Ms: number
  /** revocations whose session was still open 10 s later */
  timeouts: number
  /** sessions of other toys closed by the revocations */
  bystandersClosed: number
  /** the revoked toy connecting again */
  reconnect: string
  /** Mosquitto: time until the restarted broker accepted connections again */
  enforcedP50Ms?: number
  /** Mosquitto: what a CRL update with SIGHUP (no restart) did to the open session */
  reloadOnly?: { sessionOpenAfter1s: boolean; reconnect: string }
}

export interface SessionFigures {
  idle?: IdleFigures
  connects?: ConnectsFigures
  qos0?: EchoFigures
  qos1?: EchoFigures
  revocation?: RevocationFigures
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const ids = (toys: Toy[]): string[] => toys.map((t) => t.id)
const round = (n: number, digits = 1): number => Math.round(n * 10 ** digits) / 10 ** digits

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}

export async function runModes(
  broker: BrokerUnderTest,
  pool: LoadPool,
  cast: Cast,
  shape: Shape,
  modes: readonly Mode[],
  log: (s: string) => void,
): Promise<SessionFigures> {
  const out: SessionFigures = {}
  // idle first: the process's memory before its first toy is only seen on a fresh broker
  if (modes.includes('idle')) log(`    idle: ${JSON.stringify((out.idle = await idle(broker, pool, cast, shape)))}`)
  if (modes.includes('connects'))
    log(`    connects: ${brief((out.connects = await connects(broker, pool, cast, shape)))}`)
  if (modes.includes('qos0')) log(`    qos0: ${brief((out.qos0 = await echo(broker, pool, cast, shape, 0)))}`)
  if (modes.includes('qos1')) log(`    qos1: ${brief((out.qos1 = await echo(broker, pool, cast, shape, 1)))}`)
  // last: revoked toys stay revoked, and Mosquitto's revocation restarts it
  if (modes.includes('revocation')) {
    out.revocation =
      broker instanceof KennelUnderTest
        ? await revokeKennel(broker, pool, cast)
        : await revokeMosquitto(broker as MosquittoUnderTest, pool, cast)
    const { samples: _, ...rest } = out.revocation
    log(`    revocation: ${JSON.stringify(rest)}`)
  }
  return out
}

function brief(f: ConnectsFigures | EchoFigures): string {
  const { perSecond, p50Ms, p99Ms, generator, brokerCpuPct, otherCpuPct } = f
  return JSON.stringify({
    perSecond: round(perSecond),
    p50Ms,
    p99Ms,
    brokerCpuPct,
    generator,
    otherCpuPct,
    ...('lost' in f ? { lost: f.lost, duplicates: f.duplicates, stalled: f.stalled } : { failures: f.failures }),
  })
}

/** median of a few VmRSS samples of the broker's process tree, in KB */
async function settledRssKB(broker: BrokerUnderTest): Promise<number> {
  const samples: number[] = []
  for (let i = 0; i < 5; i++) {
    await sleep(400)
    samples.push(treeRssKB(broker.pid))
  }
  return percentile(samples, 50)
}

/** The broker's and the whole machine's CPU, sampled while a load runs, so that their shares over
 * the interval the load processes measured (after their set-up and warm-up) can be read
 * afterwards. What the machine spent beyond the broker and the generator is other processes'
 * work: on a busy machine the figures are not the brokers' alone. */
class CpuTimeline {
  private readonly samples: Array<[at: number, brokerMs: number, machineMs: number]> = []
  private readonly pids: number[]
  private readonly timer: NodeJS.Timeout
  constructor(broker: BrokerUnderTest) {
    this.pids = processTree(broker.pid)
    this.sample()
    this.timer = setInterval(() => this.sample(), 200)
  }

  private sample(): void {
    this.samples.push([wallNow(), cpuMs(this.pids), machineBusyMs()])
  }

  /** % of one core between the first and last samples inside [from, until]: the broker's, and
   * other processes' (the machine's less the broker's and the generator's) */
  percentOf([from, until]: [number, number], generator: GeneratorCpu): { brokerCpuPct: number; otherCpuPct: number } {
    clearInterval(this.timer)
    const inside = this.samples.filter(([at]) => at >= from && at <= until)
    if (inside.length < 2) return { brokerCpuPct: NaN, otherCpuPct: NaN }
    const [t0, b0, m0] = inside[0]!
    const [t1, b1, m1] = inside.at(-1)!
    const pct = (ms: number): number => Math.round((ms / (t1 - t0)) * 100)
    return { brokerCpuPct: pct(b1 - b0), otherCpuPct: Math.max(0, pct(m1 - m0) - pct(b1 - b0) - generator.totalPct) }
  }
}

async function idle(broker: BrokerUnderTest, pool: LoadPool, cast: Cast, shape: Shape): Promise<IdleFigures> {
  await sleep(2000)
  const before = await settledRssKB(broker)
  const { held, refused, cpu } = await pool.hold(ids(cast.idle.slice(0, shape.idle)), 32)
  await sleep(2000)
  const after = await settledRssKB(broker)
  await pool.release()
  return {
    rssIdleMB: round(before / 1024),
    rssWithIdleMB: round(after / 1024),
    rssPerConnKB: round((after - before) / Math.max(1, held)),
    held,
    refused,
    generator: cpu,
  }
}

async function connects(broker: BrokerUnderTest, pool: LoadPool, cast: Cast, shape: Shape): Promise<ConnectsFigures> {
  const cpu = new CpuTimeline(broker)
  const r = await pool.connects(ids(cast.idle), {
    inFlight: shape.inFlight,
    warmupMs: shape.warmupS * 1000,
    measureMs: shape.durationS * 1000,
  })
  const shares = cpu.percentOf(r.window, r.cpu)
  await sleep(1000) // let the last sessions close before the next mode
  return {
    perSecond: r.perSecond,
    p50Ms: round(r.latency.percentile(50), 2),
    p99Ms: round(r.latency.percentile(99), 2),
    failures: r.failures,
    generator: r.cpu,
    ...shares,
  }
}

async function echo(
  broker: BrokerUnderTest,
  pool: LoadPool,
  cast: Cast,
  shape: Shape,
  qos: 0 | 1,
): Promise<EchoFigures> {
  const cpu = new CpuTimeline(broker)
  const r = await pool.echo(ids(cast.echo.slice(0, shape.echoToys)), {
    qos,
    window: shape.window,
    warmupMs: shape.warmupS * 1000,
    measureMs: shape.durationS * 1000,
    drainMs: 30_000,
  })
  const { sent, acked, uniqueReceived, duplicates, lost, stalled } = r.totals
  return {
    perSecond: r.perSecond,
    p50Ms: round(r.latency.percentile(50), 2),
    p99Ms: round(r.latency.percentile(99), 2),
    sent,
    acked,
    uniqueReceived,
    duplicates,
    lost,
    stalled,
    generator: r.cpu,
    ...cpu.percentOf(r.window, r.cpu),
  }
}

// kennel: ops revokes each toy through the API; the time is from the request to the toy's socket
// closing, with the other toys' sessions untouched
async function revokeKennel(broker: KennelUnderTest, pool: LoadPool, cast: Cast): Promise<RevocationFigures> {
  const { held } = await pool.hold([...ids(cast.revoked), cast.bystander.id], 8)
  if (held !== cast.revoked.length + 1)
    throw new Error(`kennel accepted ${held} of ${cast.revoked.length + 1} toys for the revocation mode`)
  const samples: number[] = []
  let timeouts = 0
  for (const toy of cast.revoked) {
    const closed = pool.watch(toy.id, 10_000)
    const t0 = wallNow()
    await broker.revoke(toy.id)
    const at = await closed
    if (Number.isNaN(at)) timeouts++
    else samples.push(round(at - t0, 2))
  }
  const bystandersClosed = (await pool.isOpen(cast.bystander.id)) ? 0 : 1
  const reconnect = await pool.tryConnect(cast.revoked[0]!.id)
  await pool.release()
  return {
    how: 'POST /v1/ops/devices/{id}/revoke',
    samples,
    p50Ms: round(percentile(samples, 50), 2),
    p99Ms: round(percentile(samples, 99), 2),
    timeouts,
    bystandersClosed,
    reconnect,
  }
}

// Mosquitto: first what a CRL update with SIGHUP does (the session stays open), then what it
// takes to close the session — the CRL updated and the broker restarted — timed from the CRL
// write to the toy's socket closing
async function revokeMosquitto(broker: MosquittoUnderTest, pool: LoadPool, cast: Cast): Promise<RevocationFigures> {
  const probe = cast.reloadProbe
  await pool.hold([probe.id, cast.bystander.id], 2)
  await broker.revokeInCrl(probe.serial)
  broker.reload()
  await sleep(1000)
  const reloadOnly = { sessionOpenAfter1s: await pool.isOpen(probe.id), reconnect: await pool.tryConnect(probe.id) }
  await pool.release()

  const samples: number[] = []
  const enforced: number[] = []
  let timeouts = 0
  let bystandersClosed = 0
  for (const toy of cast.revoked) {
    const { held } = await pool.hold([toy.id, cast.bystander.id], 2)
    if (held !== 2) throw new Error(`mosquitto accepted ${held} of 2 toys for the revocation mode`)
    const closed = pool.watch(toy.id, 10_000)
    const t0 = wallNow()
    await broker.revokeInCrl(toy.serial)
    await broker.restart()
    enforced.push(wallNow() - t0)
    const at = await closed
    if (Number.isNaN(at)) timeouts++
    else samples.push(round(at - t0, 2))
    if (!(await pool.isOpen(cast.bystander.id))) bystandersClosed++
    await pool.release()
  }
  const reconnect = await pool.tryConnect(cast.revoked[0]!.id)
  return {
    how: 'CRL updated, broker restarted (all sessions closed)',
    samples,
    p50Ms: round(percentile(samples, 50), 2),
    p99Ms: round(percentile(samples, 99), 2),
    timeouts,
    bystandersClosed,
    reconnect,
    enforcedP50Ms: round(percentile(enforced, 50), 2),
    reloadOnly,
  }
}
