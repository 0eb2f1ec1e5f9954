import { LatencyHistogram, type SparseHistogram } from './histogram.ts'
import { ConnectRefused, openSession, type Target, type ToyCredentials, wallNow } from './session.ts'

// Connects: `inFlight` loops, each taking the next toy of its own share (so one toy is never
// connecting twice at once), doing a full mutual-TLS handshake, CONNECT, CONNACK, then
// DISCONNECT, and starting the next at once. Connects completed during the measured interval
// count; the warm-up's do not.

export interface ConnectsOptions {
  inFlight: number
  warmupMs: number
  measureMs: number
}

export interface ConnectsResult {
  connects: number
  measuredMs: number
  /** the measured interval, wall-clock ms */
  window: [number, number]
  cpuMs: number
  /** CONNACK received − connect started */
  latency: SparseHistogram
  failures: Record<string, number>
}

export async function runConnects(
  toys: ToyCredentials[],
  target: Target,
  opts: ConnectsOptions,
): Promise<ConnectsResult> {
  const latency = new LatencyHistogram()
  const failures: Record<string, number> = {}
  const start = performance.now()
  const measureFrom = start + opts.warmupMs
  const measureUntil = measureFrom + opts.measureMs
  let connects = 0
  let cpu0: NodeJS.CpuUsage | undefined
  let cpu: NodeJS.CpuUsage | undefined
  const window: [number, number] = [NaN, NaN]
  const startTimer = setTimeout(() => ((cpu0 = process.cpuUsage()), (window[0] = wallNow())), opts.warmupMs)
  const stopTimer = setTimeout(
    () => ((cpu = process.cpuUsage(cpu0)), (window[1] = wallNow())),
    opts.warmupMs + opts.measureMs,
  )
  const slots = Math.min(opts.inFlight, toys.length)
  await Promise.all(
    Array.from({ length: slots }, async (_, slot) => {
      const share = toys.filter((_, i) => i % slots === slot)
      for (let n = 0; performance.now() < measureUntil; n++) {
        const t0 = performance.now()
        try {
          const session = await openSession(share[n % share.length]!, target)
          const t1 = performance.now()
          if (t1 >= measureFrom && t1 < measureUntil) {
            connects++
            latency.record(t1 - t0)
          }
          session.disconnect()
        } catch (err) {
          const what = err instanceof ConnectRefused ? err.outcome : String(err)
          failures[what] = (failures[what] ?? 0) + 1
        }
      }
    }),
  )
  clearTimeout(startTimer)
  clearTimeout(stopTimer)
  cpu ??= process.cpuUsage(cpu0)
  return {
    connects,
    measuredMs: opts.measureMs,
    window,
    cpuMs: (cpu.user + cpu.system) / 1000,
    latency: latency.toSparse(),
    failures,
  }
}
