import type { GeneratorCpu } from '../loadgen/pool.ts'
import type { EchoFigures, Mode, RevocationFigures, SessionFigures, Shape } from './modes.ts'
import type { BrokerName } from './subject.ts'

// From the rounds' figures to the table and the JSON object: each figure is the median over the
// rounds of each broker's value, with the ratio kennel / Mosquitto, the generator's CPU beside it
// and a flag where the generator (a load process at ≥ 90% of a core) may have been the limit.

export type Rounds = Record<BrokerName, SessionFigures[]>
export interface Pair {
  kennel: number | null
  mosquitto: number | null
  ratio: number | null
}

interface Figure {
  key: string
  label: string
  mode: Mode
  digits: number
  pick: (f: SessionFigures) => number | undefined
}

const FIGURES = (shape: Shape): Figure[] => [
  {
    key: 'connectsPerSec',
    label: `mTLS connects/s (${shape.inFlight} in flight)`,
    mode: 'connects',
    digits: 0,
    pick: (f) => f.connects?.perSecond,
  },
  {
    key: 'connectLatencyP99Ms',
    label: '  connect → CONNACK p99 ms',
    mode: 'connects',
    digits: 1,
    pick: (f) => f.connects?.p99Ms,
  },
  {
    key: 'qos0MsgsPerSec',
    label: `QoS 0 delivered msgs/s (${shape.echoToys} toys, window ${shape.window})`,
    mode: 'qos0',
    digits: 0,
    pick: (f) => f.qos0?.perSecond,
  },
  { key: 'qos0LatencyP50Ms', label: '  QoS 0 latency p50 ms', mode: 'qos0', digits: 1, pick: (f) => f.qos0?.p50Ms },
  { key: 'qos0LatencyP99Ms', label: '  QoS 0 latency p99 ms', mode: 'qos0', digits: 1, pick: (f) => f.qos0?.p99Ms },
  {
    key: 'qos1MsgsPerSec',
    label: `QoS 1 delivered msgs/s (${shape.echoToys} toys, window ${shape.window})`,
    mode: 'qos1',
    digits: 0,
    pick: (f) => f.qos1?.perSecond,
  },
  { key: 'qos1LatencyP50Ms', label: '  QoS 1 latency p50 ms', mode: 'qos1', digits: 1, pick: (f) => f.qos1?.p50Ms },
  { key: 'qos1LatencyP99Ms', label: '  QoS 1 latency p99 ms', mode: 'qos1', digits: 1, pick: (f) => f.qos1?.p99Ms },
  {
    key: 'rssPerConnKB',
    label: `RSS per idle connection KB (${shape.idle} held)`,
    mode: 'idle',
    digits: 1,
    pick: (f) => f.idle?.rssPerConnKB,
  },
  {
    key: 'rssIdleMB',
    label: '  whole process, before the first toy MB',
    mode: 'idle',
    digits: 1,
    pick: (f) => f.idle?.rssIdleMB,
  },
  {
    key: 'rssWith2000MB',
    label: `  whole process, with ${shape.idle} toys MB`,
    mode: 'idle',
    digits: 1,
    pick: (f) => f.idle?.rssWithIdleMB,
  },
  {
    key: 'revocationP50Ms',
    label: 'revocation → session closed p50 ms',
    mode: 'revocation',
    digits: 1,
    pick: (f) => f.revocation?.p50Ms,
  },
  {
    key: 'revocationP99Ms',
    label: 'revocation → session closed p99 ms',
    mode: 'revocation',
    digits: 1,
    pick: (f) => f.revocation?.p99Ms,
  },
]

const LOADED_MODES = ['connects', 'qos0', 'qos1', 'idle'] as const
type LoadedMode = (typeof LOADED_MODES)[number]
const GENERATOR_LIMIT_PCT = 90

export function median(xs: number[]): number | null {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return null
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

const roundTo = (n: number | null, digits: number): number | null =>
  n === null ? null : Math.round(n * 10 ** digits) / 10 ** digits

function generatorOf(f: SessionFigures, mode: LoadedMode): GeneratorCpu | undefined {
  return f[mode]?.generator
}

function brokerCpuOf(f: SessionFigures, mode: LoadedMode): number | undefined {
  return mode === 'idle' ? undefined : f[mode]?.brokerCpuPct
}

function otherCpuOf(f: SessionFigures, mode: LoadedMode): number | undefined {
  return mode === 'idle' ? undefined : f[mode]?.otherCpuPct
}

// other processes at a quarter of a core or more: the brokers did not have the machine to themselves
const BUSY_MACHINE_PCT = 25

export interface Summary {
  pairs: Record<string, Pair>
  generatorCpu: Record<string, Record<BrokerName, { totalPct: number | null; maxProcessPct: number | null } | null>>
  brokerCpuPct: Record<string, Record<BrokerName, number | null>>
  /** CPU other processes used during each load, in % of one core */
  otherCpuPct: Record<string, Record<BrokerName, number | null>>
  limitedByGenerator: string[]
  /** per mode: where the generator or the machine may have limited the figures */
  flags: Record<string, string[]>
  delivery: Record<
    'qos0' | 'qos1',
    Record<
      BrokerName,
      Pick<EchoFigures, 'sent' | 'acked' | 'uniqueReceived' | 'duplicates' | 'lost' | 'stalled'> | null
    >
  >
  revocation: Record<BrokerName, Omit<RevocationFigures, 'samples'> | null>
}

export function summarize(
  rounds: Rounds,
  shape: Shape,
  modes: readonly Mode[],
  mosquittoRan: boolean,
  cores: number,
): Summary {
  const brokers: BrokerName[] = ['kennel', 'mosquitto']
  const pairs: Record<string, Pair> = {}
  for (const fig of FIGURES(shape)) {
    if (!modes.includes(fig.mode)) continue
    const [k, m] = brokers.map((b) =>
      roundTo(median(rounds[b].map(fig.pick).filter((x): x is number => x !== undefined)), fig.digits),
    )
    pairs[fig.key] = {
      kennel: k ?? null,
      mosquitto: mosquittoRan ? (m ?? null) : null,
      ratio: k != null && m != null && m !== 0 && mosquittoRan ? roundTo(k / m, 2) : null,
    }
  }
  const generatorCpu: Summary['generatorCpu'] = {}
  const brokerCpuPct: Summary['brokerCpuPct'] = {}
  const otherCpuPct: Summary['otherCpuPct'] = {}
  const limitedByGenerator: string[] = []
  for (const mode of LOADED_MODES) {
    if (!modes.includes(mode)) continue
    generatorCpu[mode] = { kennel: null, mosquitto: null }
    brokerCpuPct[mode] = { kennel: null, mosquitto: null }
    otherCpuPct[mode] = { kennel: null, mosquitto: null }
    for (const b of brokers) {
      const gens = rounds[b].map((f) => generatorOf(f, mode)).filter((g): g is GeneratorCpu => g !== undefined)
      if (gens.length === 0) continue
      generatorCpu[mode][b] = {
        totalPct: median(gens.map((g) => g.totalPct)),
        maxProcessPct: median(gens.map((g) => g.maxProcessPct)),
      }
      brokerCpuPct[mode][b] = median(
        rounds[b].map((f) => brokerCpuOf(f, mode)).filter((x): x is number => x !== undefined),
      )
      otherCpuPct[mode][b] = median(
        rounds[b].map((f) => otherCpuOf(f, mode)).filter((x): x is number => x !== undefined),
      )
      // idle: connecting the toys is not what is measured there
      if (mode !== 'idle' && gens.some((g) => g.maxProcessPct >= GENERATOR_LIMIT_PCT))
        limitedByGenerator.push(`${mode} (${b})`)
    }
  }
  const flags: Record<string, string[]> = {}
  for (const mode of LOADED_MODES) {
    if (!modes.includes(mode) || mode === 'idle') continue
    flags[mode] = []
    for (const b of brokers) {
      if (limitedByGenerator.includes(`${mode} (${b})`)) flags[mode].push(`generator-limited (${b})`)
      const broker = brokerCpuPct[mode]![b]
      const generator = generatorCpu[mode]![b]?.totalPct
      if (broker == null || generator == null) continue
      // on a machine this small the generator's CPU is CPU the broker did not get
      if (broker + generator >= 0.9 * cores * 100) flags[mode].push(`machine CPU-bound (${b})`)
      if (generator >= broker) flags[mode].push(`generator CPU ≥ broker's (${b})`)
      const other = otherCpuPct[mode]![b]
      if (other != null && other >= BUSY_MACHINE_PCT) flags[mode].push(`busy machine: other processes ${other}% (${b})`)
    }
  }
  const deliveryOf = (mode: 'qos0' | 'qos1', b: BrokerName): Summary['delivery']['qos0']['kennel'] => {
    const all = rounds[b].map((f) => f[mode]).filter((e): e is EchoFigures => e !== undefined)
    if (all.length === 0) return null
    const sum = (k: 'sent' | 'acked' | 'uniqueReceived' | 'duplicates' | 'lost' | 'stalled'): number =>
      all.reduce((s, e) => s + e[k], 0)
    return {
      sent: sum('sent'),
      acked: sum('acked'),
      uniqueReceived: sum('uniqueReceived'),
      duplicates: sum('duplicates'),
      lost: sum('lost'),
      stalled: sum('stalled'),
    }
  }
  const revocationOf = (b: BrokerName): Omit<RevocationFigures, 'samples'> | null => {
    const last = rounds[b]
      .map((f) => f.revocation)
      .filter((r): r is RevocationFigures => r !== undefined)
      .at(-1)
    if (!last) return null
    const { samples: _, ...rest } = last
    return rest
  }
  return {
    pairs,
    generatorCpu,
    brokerCpuPct,
    otherCpuPct,
    limitedByGenerator,
    flags,
    delivery: {
      qos0: { kennel: deliveryOf('qos0', 'kennel'), mosquitto: deliveryOf('qos0', 'mosquitto') },
      qos1: { kennel: deliveryOf('qos1', 'kennel'), mosquitto: deliveryOf('qos1', 'mosquitto') },
    },
    revocation: { kennel: revocationOf('kennel'), mosquitto: revocationOf('mosquitto') },
  }
}

export function table(summary: Summary, shape: Shape): string {
  const fmt = (n: number | null): string =>
    n === null ? '—' : n >= 1000 ? Math.round(n).toLocaleString('en-US') : String(n)
  const cpu = (mode: string, b: BrokerName): string => {
    const g = summary.generatorCpu[mode]?.[b]
    return g ? `${g.totalPct}%/${g.maxProcessPct}%` : '—'
  }
  const header = ['figure', 'kennel', 'mosquitto', 'ratio', 'gen CPU k', 'gen CPU m', 'broker CPU k/m', 'flags']
  const rows: string[][] = [header]
  for (const fig of FIGURES(shape)) {
    const p = summary.pairs[fig.key]
    if (!p) continue
    const mode = fig.mode as string
    const first = !fig.label.startsWith('  ')
    const flags = first ? (summary.flags[mode] ?? []) : []
    const broker = summary.brokerCpuPct[mode]
    rows.push([
      fig.label,
      fmt(p.kennel),
      fmt(p.mosquitto),
      p.ratio === null ? '—' : `${p.ratio}×`,
      first && mode !== 'revocation' ? cpu(mode, 'kennel') : '',
      first && mode !== 'revocation' ? cpu(mode, 'mosquitto') : '',
      first && broker && mode !== 'idle' ? `${broker.kennel ?? '—'}%/${broker.mosquitto ?? '—'}%` : '',
      flags.join(', '),
    ])
  }
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  const lines = rows.map((r) =>
    r
      .map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd(),
  )
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '))
  const notes: string[] = [
    '',
    'gen CPU: load processes together / the busiest one, in % of one core (a process at ≥ 90% may have limited the figure)',
  ]
  for (const qos of ['qos0', 'qos1'] as const) {
    for (const b of ['kennel', 'mosquitto'] as const) {
      const d = summary.delivery[qos][b]
      if (d)
        notes.push(
          `${qos} ${b}: sent ${d.sent}, ${qos === 'qos1' ? `acknowledged ${d.acked}, ` : ''}received ${d.uniqueReceived}, lost ${d.lost}, duplicated ${d.duplicates}, given up after stalling ${d.stalled}`,
        )
    }
  }
  for (const b of ['kennel', 'mosquitto'] as const) {
    const r = summary.revocation[b]
    if (!r) continue
    notes.push(
      `revocation ${b}: ${r.how}; other sessions closed ${r.bystandersClosed}; revoked toy reconnecting: ${r.reconnect}${r.timeouts ? `; ${r.timeouts} sessions still open after 10 s` : ''}`,
    )
    if (r.enforcedP50Ms !== undefined)
      notes.push(`  broker accepting connections again p50 ${r.enforcedP50Ms} ms after the CRL write`)
    if (r.reloadOnly)
      notes.push(
        `  CRL update + SIGHUP alone: session still open after 1 s: ${r.reloadOnly.sessionOpenAfter1s}; reconnect: ${r.reloadOnly.reconnect}`,
      )
  }
  return [...lines, ...notes].join('\n')
}
