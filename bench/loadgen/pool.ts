import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ConnectsOptions, ConnectsResult } from './connects.ts'
import type { EchoOptions, EchoResult } from './echo.ts'
import { CLoadProcess } from './cproc.ts'
import { LatencyHistogram } from './histogram.ts'

// The driver's side of the load generator: N load processes, each owning a fixed share of the
// toys (toy i → process i mod N), asked to run the same load in parallel. A load process is
// either the C generator (c/loadgen.c, see cproc.ts) or a Node one (process.ts); both take the
// same requests and answer alike. Their CPU time over the measured interval is what says whether
// the generator limited a figure.

type Reply = Record<string, unknown>

/** which load generator runs the load: the C one (a compiled binary) or the Node one */
export type Generator = { kind: 'c'; binary: string } | { kind: 'node' }

interface LoadWorker {
  readonly ids: string[]
  request<T = Reply>(op: string, args?: Reply): Promise<T>
  kill(): void
}

/** the generator's CPU over a measured interval, in percent of one core */
export interface GeneratorCpu {
  /** all load processes together */
  totalPct: number
  /** the busiest one: a process at ~90% or more of its core was the limit */
  maxProcessPct: number
}

class LoadProcess implements LoadWorker {
  private seq = 0
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>()
  readonly ids: string[] = []

  constructor(readonly child: ChildProcess) {
    child.on('message', (m: Reply & { seq?: number; error?: string }) => {
      if (m.seq === undefined) return
      const w = this.waiting.get(m.seq)
      this.waiting.delete(m.seq)
      if (m.error !== undefined) w?.reject(new Error(`load process ${child.pid}: ${m.error}`))
      else w?.resolve(m)
    })
    child.once('exit', (code, signal) => {
      for (const w of this.waiting.values()) w.reject(new Error(`load process ${child.pid} exited (${code ?? signal})`))
      this.waiting.clear()
    })
  }

  request<T = Reply>(op: string, args: Reply = {}): Promise<T> {
    const seq = this.seq++
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, { resolve: resolve as (r: Reply) => void, reject })
      this.child.send({ ...args, op, seq })
    })
  }

  kill(): void {
    this.child.kill()
  }
}

export class LoadPool {
  private readonly owner = new Map<string, LoadWorker>()
  private constructor(private readonly procs: LoadWorker[]) {}

  static async start(
    processes: number,
    toysFile: string,
    caPem: string,
    ids: string[],
    generator: Generator = { kind: 'node' },
  ): Promise<LoadPool> {
    const file = fileURLToPath(new URL('./process.ts', import.meta.url))
    const procs = await Promise.all(
      Array.from({ length: processes }, async (): Promise<LoadWorker> => {
        if (generator.kind === 'c') return CLoadProcess.start(generator.binary)
        const child = fork(file, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
        await new Promise((resolve, reject) => (child.once('message', resolve), child.once('exit', reject)))
        return new LoadProcess(child)
      }),
    )
    const pool = new LoadPool(procs)
    ids.forEach((id, i) => {
      const p = procs[i % processes]!
      p.ids.push(id)
      pool.owner.set(id, p)
    })
    await Promise.all(procs.map((p) => p.request('init', { toysFile, caPem, ids: p.ids })))
    return pool
  }

  ownerOf(id: string): LoadWorker {
    const p = this.owner.get(id)
    if (!p) throw new Error(`no load process owns ${id}`)
    return p
  }

  /** the given toys grouped by the process that owns them (processes without any are left out) */
  private split(ids: string[]): Array<[LoadWorker, string[]]> {
    const groups = new Map<LoadWorker, string[]>()
    for (const id of ids) {
      const p = this.ownerOf(id)
      groups.set(p, [...(groups.get(p) ?? []), id])
    }
    return [...groups]
  }

  async setTarget(port: number): Promise<void> {
    await Promise.all(this.procs.map((p) => p.request('target', { port })))
  }

  async hold(
    ids: string[],
    concurrency: number,
  ): Promise<{ held: number; refused: Record<string, number>; cpu: GeneratorCpu }> {
    const groups = this.split(ids)
    const per = Math.max(1, Math.ceil(concurrency / groups.length))
    const rs = await Promise.all(
      groups.map(([p, mine]) =>
        p.request<{ held: number; refused: Record<string, number>; cpuMs: number; wallMs: number }>('hold', {
          ids: mine,
          concurrency: per,
        }),
      ),
    )
    return {
      held: rs.reduce((s, r) => s + r.held, 0),
      refused: mergeCounts(rs.map((r) => r.refused)),
      cpu: cpuOf(rs.map((r) => [r.cpuMs, r.wallMs])),
    }
  }

  async release(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.request('release')))
  }

  async connects(
    ids: string[],
    opts: ConnectsOptions,
  ): Promise<{
    perSecond: number
    latency: LatencyHistogram
    failures: Record<string, number>
    cpu: GeneratorCpu
    window: [number, number]
  }> {
    const groups = this.split(ids)
    const rs = await Promise.all(
      groups.map(([p, mine]) =>
        p.request<ConnectsResult>('connects', {
          ids: mine,
          opts: { ...opts, inFlight: Math.ceil(opts.inFlight / groups.length) },
        }),
      ),
    )
    const latency = new LatencyHistogram()
    for (const r of rs) latency.add(r.latency)
    return {
      perSecond: rs.reduce((s, r) => s + r.connects, 0) / (opts.measureMs / 1000),
      latency,
      failures: mergeCounts(rs.map((r) => r.failures)),
      cpu: cpuOf(rs.map((r) => [r.cpuMs, r.measuredMs])),
      window: windowOf(rs),
    }
  }

  async echo(
    ids: string[],
    opts: EchoOptions,
  ): Promise<{
    perSecond: number
    latency: LatencyHistogram
    totals: Omit<EchoResult, 'latency' | 'measuredMs' | 'cpuMs' | 'window'>
    cpu: GeneratorCpu
    window: [number, number]
  }> {
    const groups = this.split(ids)
    await Promise.all(groups.map(([p, mine]) => p.request('echoPrepare', { ids: mine, opts })))
    const rs = await Promise.all(groups.map(([p]) => p.request<EchoResult>('echoMeasure')))
    const latency = new LatencyHistogram()
    for (const r of rs) latency.add(r.latency)
    const sum = (k: keyof EchoResult): number => rs.reduce((s, r) => s + (r[k] as number), 0)
    const measuredS = Math.max(...rs.map((r) => r.measuredMs)) / 1000
    return {
      perSecond: sum('received') / measuredS,
      latency,
      totals: {
        toys: sum('toys'),
        received: sum('received'),
        sent: sum('sent'),
        acked: sum('acked'),
        uniqueReceived: sum('uniqueReceived'),
        duplicates: sum('duplicates'),
        lost: sum('lost'),
        stalled: sum('stalled'),
      },
      cpu: cpuOf(rs.map((r) => [r.cpuMs, r.measuredMs])),
      window: windowOf(rs),
    }
  }

  /** wall-clock time the held session of `id` closed; NaN if it was still open after timeoutMs */
  async watch(id: string, timeoutMs: number): Promise<number> {
    return (await this.ownerOf(id).request<{ closedAt: number }>('watch', { id, timeoutMs })).closedAt ?? NaN
  }

  async isOpen(id: string): Promise<boolean> {
    return (await this.ownerOf(id).request<{ open: boolean }>('isOpen', { id })).open
  }

  async tryConnect(id: string): Promise<string> {
    return (await this.ownerOf(id).request<{ outcome: string }>('tryConnect', { id })).outcome
  }

  close(): void {
    for (const p of this.procs) p.kill()
  }
}

function cpuOf(samples: Array<[cpuMs: number, wallMs: number]>): GeneratorCpu {
  const pcts = samples.map(([cpu, wall]) => (wall > 0 ? (cpu / wall) * 100 : 0))
  return { totalPct: Math.round(pcts.reduce((s, p) => s + p, 0)), maxProcessPct: Math.round(Math.max(0, ...pcts)) }
}

/** the interval all load processes were measuring */
function windowOf(rs: Array<{ window: [number, number] }>): [number, number] {
  return [Math.max(...rs.map((r) => r.window[0])), Math.min(...rs.map((r) => r.window[1]))]
}

function mergeCounts(all: Array<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const counts of all) for (const [k, n] of Object.entries(counts)) out[k] = (out[k] ?? 0) + n
  return out
}
