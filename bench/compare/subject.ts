import type { ChildProcess } from 'node:child_process'
import net from 'node:net'

// What the bench needs of a broker under test, and the process plumbing both share.

export type BrokerName = 'kennel' | 'mosquitto'

export interface BrokerUnderTest {
  readonly name: BrokerName
  /** the MQTT-over-mutual-TLS port on 127.0.0.1 */
  readonly port: number
  /** the root of the broker's process tree (changes when Mosquitto is restarted) */
  readonly pid: number
  start(): Promise<void>
  stop(): Promise<void>
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** resolves once a TCP connect to the port succeeds */
export async function waitListening(port: number, timeoutMs: number, exited: () => string | undefined): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => (s.destroy(), resolve(true)))
      s.once('error', () => resolve(false))
    })
    if (ok) return
    const why = exited()
    if (why !== undefined) throw new Error(why)
    if (Date.now() > until) throw new Error(`nothing listened on 127.0.0.1:${port} within ${timeoutMs / 1000} s`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** SIGTERM, then SIGKILL if the process has not exited after `graceMs` */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

/** the last lines a child wrote, for an error message */
export class OutputTail {
  private lines: string[] = []
  constructor(private readonly keep = 30) {}
  push(chunk: Buffer): void {
    this.lines.push(
      ...chunk
        .toString()
        .split('\n')
        .filter((l) => l.length > 0),
    )
    if (this.lines.length > this.keep) this.lines = this.lines.slice(-this.keep)
  }
  toString(): string {
    return this.lines.join('\n')
  }
}

/** the caller's environment without KENNEL_* variables, so that a shell's settings do not leak into the run */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('KENNEL_')) env[k] = v
  return env
}
