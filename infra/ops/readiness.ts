// Readiness as named checks (R11): a process is ready when every check passes. Each check has
// a deadline, so a store that hangs makes the process not ready instead of hanging the probe.
// Liveness (/healthz) is not here on purpose: it answers while the event loop runs, whatever
// the dependencies do, so that an orchestrator restarts a stuck process and not a healthy one
// whose database is away.

export interface CheckResult {
  ok: boolean
  /** figures or the reason, for the operator (served on the loopback listener only) */
  detail?: unknown
}

export interface ReadinessCheck {
  name: string
  check(): Promise<CheckResult>
}

export interface ReadinessReport {
  ready: boolean
  checks: Record<string, CheckResult>
}

const DEFAULT_TIMEOUT_MS = 2000

export class Readiness {
  private readonly checks: ReadinessCheck[] = []
  private readonly listeners = new Map<string, boolean>()
  private draining = false

  constructor(private readonly timeoutMs = DEFAULT_TIMEOUT_MS) {
    this.add({ name: 'listeners', check: async () => this.listenerState() })
  }

  add(check: ReadinessCheck): this {
    this.checks.push(check)
    return this
  }

  /** a listener the process must have before it is ready; `up` once it accepts connections */
  listener(name: string): { up(): void; down(): void } {
    this.listeners.set(name, false)
    return { up: () => void this.listeners.set(name, true), down: () => void this.listeners.set(name, false) }
  }

  /** the process is stopping: not ready from now on, so traffic moves elsewhere first */
  drain(): void {
    this.draining = true
  }

  async report(): Promise<ReadinessReport> {
    const results = await Promise.all(this.checks.map((c) => this.run(c)))
    const checks = Object.fromEntries(this.checks.map((c, i) => [c.name, results[i]!]))
    return { ready: results.every((r) => r.ok), checks }
  }

  private listenerState(): CheckResult {
    const down = [...this.listeners].filter(([, up]) => !up).map(([name]) => name)
    if (this.draining) return { ok: false, detail: 'stopping' }
    return { ok: down.length === 0, detail: down.length === 0 ? { up: [...this.listeners.keys()] } : { down } }
  }

  private async run(c: ReadinessCheck): Promise<CheckResult> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<CheckResult>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, detail: `no answer within ${this.timeoutMs} ms` }), this.timeoutMs)
    })
    try {
      return await Promise.race([
        c.check().catch((err: unknown) => ({ ok: false, detail: err instanceof Error ? err.message : String(err) })),
        deadline,
      ])
    } finally {
      clearTimeout(timer)
    }
  }
}

/** what a public listener says: the verdict and which checks fail, no figures */
export function publicReport(report: ReadinessReport): {
  status: 'ready' | 'not ready'
  checks: Record<string, 'ok' | 'failing'>
} {
  return {
    status: report.ready ? 'ready' : 'not ready',
    checks: Object.fromEntries(Object.entries(report.checks).map(([name, r]) => [name, r.ok ? 'ok' : 'failing'])),
  }
}
