import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { KennelUnderTest } from './compare/kennel.ts'
import { type Cast, type Mode, MODES, runModes, type SessionFigures, type Shape } from './compare/modes.ts'
import { MOSQUITTO, MOSQUITTO_INSTALL, MosquittoUnderTest, mosquittoVersion } from './compare/mosquitto.ts'
import { type Rounds, summarize, table } from './compare/report.ts'
import type { BrokerUnderTest } from './compare/subject.ts'
import { keptData, prepareData } from './compare/toys.ts'
import { buildCGenerator, C_SOURCE } from './loadgen/cproc.ts'
import { type Generator, LoadPool } from './loadgen/pool.ts'
import type { BenchOptions } from './run.ts'

// `npm run bench -- compare`: kennel and Mosquitto 2 side by side under the same load, on
// loopback, alternating kennel and Mosquitto within each round (medians over the rounds):
// mutual-TLS connects/s, QoS 0 and QoS 1 delivered msgs/s with latency, RSS per idle connection
// and of the whole process, and revocation → session closed. docs/PERFORMANCE.md explains the
// shape of each load and how to read the result.

export const usage =
  'compare [--rounds N] [--duration S] [--modes idle,connects,qos0,qos1,revocation] [--loaders N] [--generator c|node] [--json]'

const SHAPE: Omit<Shape, 'durationS'> = {
  warmupS: 1,
  idle: 2000,
  inFlight: 64,
  echoToys: 50,
  window: 100,
  revocations: 20,
}
const TOYS = 2100

interface CompareArgs {
  rounds: number
  durationS: number
  modes: Mode[]
  loaders: number
  generator: 'c' | 'node'
}

function parseArgs(args: string[]): CompareArgs {
  const out: CompareArgs = { rounds: 3, durationS: 10, modes: [...MODES], loaders: 2, generator: 'c' }
  const positive = (flag: string, v: string | undefined): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 1) usageError(`${flag} needs a whole number ≥ 1, not ${JSON.stringify(v)}`)
    return n
  }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--json') continue
    else if (a === '--rounds') out.rounds = positive(a, args[++i])
    else if (a === '--duration') out.durationS = positive(a, args[++i])
    else if (a === '--loaders') out.loaders = positive(a, args[++i])
    else if (a === '--generator') {
      const g = args[++i]
      if (g !== 'c' && g !== 'node') usageError(`--generator takes c or node, not ${JSON.stringify(g)}`)
      out.generator = g
    } else if (a === '--modes') {
      const modes = (args[++i] ?? '').split(',').filter((m) => m.length > 0)
      const unknown = modes.filter((m) => !(MODES as readonly string[]).includes(m))
      if (modes.length === 0 || unknown.length > 0)
        usageError(
          `--modes takes a comma-separated list of ${MODES.join(', ')}${unknown.length ? ` (unknown: ${unknown.join(', ')})` : ''}`,
        )
      out.modes = MODES.filter((m) => modes.includes(m))
    } else usageError(`unknown option ${JSON.stringify(a)}`)
  }
  return out
}

function usageError(message: string): never {
  process.stderr.write(`compare: ${message}\nusage: npm run bench -- ${usage}\n`)
  process.exit(64)
}

/** which load generator runs: the C one unless asked for Node or it cannot be built, which the
 * output then says, with what to install */
export interface GeneratorChoice {
  generator: Generator
  label: string
  /** set when the C generator was asked for and the Node one runs instead */
  fallback?: string
}

export function chooseGenerator(wanted: 'c' | 'node', progress: (s: string) => void): GeneratorChoice {
  if (wanted === 'node')
    return { generator: { kind: 'node' }, label: 'Node load generator (bench/loadgen, --generator node)' }
  const built = buildCGenerator()
  if ('binary' in built) {
    if (built.compiled) progress(`compiled the C load generator ${C_SOURCE} into ${built.binary}`)
    return { generator: { kind: 'c', binary: built.binary }, label: 'C load generator (bench/loadgen/c)' }
  }
  const fallback = `the C load generator cannot be built: ${built.problem}`
  progress(
    `WARNING: ${fallback}\nWARNING: falling back to the Node load generator, which on a small machine can limit the figures (see the generator CPU and the flags)`,
  )
  return { generator: { kind: 'node' }, label: `Node load generator (FALLBACK: ${fallback})`, fallback }
}

function machine(mosquitto: string | undefined): Record<string, unknown> {
  const cpus = os.cpus()
  return {
    cpus: cpus.length,
    model: cpus[0]?.model ?? 'unknown',
    memoryGB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    mosquitto: mosquitto ?? null,
    loadAverage1m: Math.round(os.loadavg()[0]! * 100) / 100,
  }
}

export async function run(opts: BenchOptions): Promise<Record<string, unknown>> {
  const args = parseArgs(opts.args)
  const shape: Shape = { ...SHAPE, durationS: args.durationS }
  // progress on stderr; the table on stdout, or on stderr with --json so that stdout is the JSON
  const progress = (s: string): void => void process.stderr.write(`${s}\n`)
  const print = (s: string): void => void (opts.json ? process.stderr : process.stdout).write(`${s}\n`)

  const version = mosquittoVersion()
  if (!version)
    progress(`Mosquitto not found at ${MOSQUITTO}: its figures are null. Install it with: ${MOSQUITTO_INSTALL}`)
  const host = machine(version)
  const choice = chooseGenerator(args.generator, progress)
  const runDir = fs.mkdtempSync(path.join(process.env.KENNEL_BENCH_DIR ?? os.tmpdir(), 'kennel-bench-compare-'))
  let pool: LoadPool | undefined
  const brokers: BrokerUnderTest[] = []
  try {
    const keep = process.env.KENNEL_BENCH_DATA
    if (!keep)
      progress(
        `enrolling ${TOYS} toys in ${runDir} (kennel's enrolment: a P-256 key, a certificate and an argon2id-hashed claim code each)…`,
      )
    const data = keep ? await keptData(path.resolve(keep), TOYS, progress) : await prepareData(runDir, TOYS, progress)
    const [reloadProbe, bystander, ...revoked] = data.toys.slice(shape.idle)
    const cast: Cast = {
      idle: data.toys.slice(0, shape.idle),
      echo: data.toys.slice(0, shape.echoToys),
      revoked: revoked.slice(0, shape.revocations),
      reloadProbe: reloadProbe!,
      bystander: bystander!,
    }
    pool = await LoadPool.start(
      args.loaders,
      data.toysFile,
      data.ca.trustedPem,
      data.toys.map((t) => t.id),
      choice.generator,
    )
    brokers.push(new KennelUnderTest(data, runDir))
    if (version) brokers.push(new MosquittoUnderTest(data, runDir))
    const rounds: Rounds = { kennel: [], mosquitto: [] }
    for (let r = 1; r <= args.rounds; r++) {
      for (const broker of brokers) {
        progress(`round ${r}/${args.rounds}: ${broker.name}`)
        await broker.start()
        let figures: SessionFigures
        try {
          await pool.setTarget(broker.port)
          figures = await runModes(broker, pool, cast, shape, args.modes, progress)
        } finally {
          await pool.release()
          await broker.stop()
        }
        rounds[broker.name].push(figures)
      }
    }
    const summary = summarize(rounds, shape, args.modes, version !== undefined, host.cpus as number)
    print('')
    print(
      `kennel vs Mosquitto ${version ?? '(not installed)'}: medians of ${args.rounds} round(s), ${args.durationS} s per load, ${args.loaders} load processes; ${host.cpus} × ${host.model}, Node ${process.version}, load average ${host.loadAverage1m} before the run`,
    )
    print(`load generator: ${choice.label}`)
    print(table(summary, shape))
    return {
      ...summary.pairs,
      machine: host,
      generator: {
        kind: choice.generator.kind,
        requested: args.generator,
        ...(choice.fallback ? { fallback: choice.fallback } : {}),
      },
      generatorCpu: summary.generatorCpu,
      brokerCpuPct: summary.brokerCpuPct,
      otherCpuPct: summary.otherCpuPct,
      limitedByGenerator: summary.limitedByGenerator,
      flags: summary.flags,
      delivery: summary.delivery,
      revocation: summary.revocation,
      options: {
        rounds: args.rounds,
        modes: args.modes,
        loaders: args.loaders,
        generator: args.generator,
        ...shape,
        toys: TOYS,
      },
      rounds,
    }
  } finally {
    pool?.close()
    for (const b of brokers) await b.stop().catch(() => undefined)
    fs.rmSync(runDir, { recursive: true, force: true })
  }
}
