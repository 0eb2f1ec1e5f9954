import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { ToyCredentials } from './session.ts'

// The C load generator (c/loadgen.c): compiled on first use with the system's C compiler into a
// cache directory (never into the repository), then run as a load process that takes the same
// requests as the Node one (process.ts), as lines on stdin, and answers with JSON lines.

export const C_SOURCE = fileURLToPath(new URL('./c/loadgen.c', import.meta.url))
export const C_INSTALL = 'apt-get install gcc libssl-dev'

/** where compiled generators are kept: $KENNEL_BENCH_CACHE, or ~/.cache/kennel-bench */
export function cacheDir(): string {
  return (
    process.env.KENNEL_BENCH_CACHE ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'kennel-bench')
  )
}

export type BuildResult = { binary: string; compiled: boolean } | { problem: string }

/** Compile the generator unless a binary of this very source is cached; on failure, what is
 * missing and how to install it. */
export function buildCGenerator(opts: { cc?: string; source?: string; dir?: string } = {}): BuildResult {
  const cc = opts.cc ?? process.env.CC ?? 'cc'
  const source = opts.source ?? C_SOURCE
  const dir = opts.dir ?? cacheDir()
  let text: Buffer
  try {
    text = fs.readFileSync(source)
  } catch {
    return { problem: `the generator's source ${source} is missing` }
  }
  const hash = createHash('sha256').update(text).update(cc).update(os.arch()).digest('hex').slice(0, 16)
  const binary = path.join(dir, `kennel-loadgen-${hash}`)
  if (fs.existsSync(binary)) return { binary, compiled: false }
  fs.mkdirSync(dir, { recursive: true })
  const tmp = `${binary}.${process.pid}.tmp`
  const r = spawnSync(cc, ['-O2', '-Wall', '-o', tmp, source, '-lssl', '-lcrypto'], { encoding: 'utf8' })
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT'
    return {
      problem: missing
        ? `no C compiler (${cc}) found; install one and the OpenSSL headers with: ${C_INSTALL}`
        : `running ${cc} failed: ${r.error.message}`,
    }
  }
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true })
    const out = `${r.stderr}${r.stdout}`
    if (/openssl\/[\w.-]+\.h/.test(out) || /cannot find -l(ssl|crypto)/.test(out))
      return { problem: `the OpenSSL headers or libraries are missing; install them with: apt-get install libssl-dev` }
    return { problem: `compiling ${source} failed:\n${out.trim().split('\n').slice(-10).join('\n')}` }
  }
  fs.renameSync(tmp, binary)
  return { binary, compiled: true }
}

type Reply = Record<string, unknown>

/** A request as the C generator reads it: `<seq> <op> name=value …`, values percent-encoded,
 * lists comma-separated, the fields of `opts` flattened. */
export function requestLine(seq: number, op: string, args: Reply): string {
  const parts = [String(seq), op]
  const add = (k: string, v: unknown): void => {
    if (v === undefined) return
    if (Array.isArray(v)) parts.push(`${k}=${v.map((x) => encodeURIComponent(String(x))).join(',')}`)
    else if (typeof v === 'object' && v !== null) for (const [kk, vv] of Object.entries(v)) add(kk, vv)
    else parts.push(`${k}=${encodeURIComponent(String(v))}`)
  }
  for (const [k, v] of Object.entries(args)) add(k, v)
  return `${parts.join(' ')}\n`
}

/** One C load process, with the interface of a Node one (pool.ts). */
export class CLoadProcess {
  readonly ids: string[] = []
  private seq = 0
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>()
  private readonly files: string[] = []
  private readonly ready: Promise<void>

  private constructor(private readonly child: ChildProcess) {
    let ready: () => void
    this.ready = new Promise<void>((resolve, reject) => {
      ready = resolve
      child.once('error', reject)
      child.once('exit', (code, signal) => reject(new Error(`C load process exited (${code ?? signal})`)))
    })
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let m: Reply & { seq?: number; error?: string; ready?: boolean }
      try {
        m = JSON.parse(line) as typeof m
      } catch {
        return
      }
      if (m.ready === true) return ready()
      const w = m.seq === undefined ? undefined : this.waiting.get(m.seq)
      if (!w) return
      this.waiting.delete(m.seq!)
      if (m.error !== undefined) w.reject(new Error(`C load process ${child.pid}: ${m.error}`))
      else w.resolve(m)
    })
    child.once('exit', (code, signal) => {
      for (const w of this.waiting.values())
        w.reject(new Error(`C load process ${child.pid} exited (${code ?? signal})`))
      this.waiting.clear()
      for (const f of this.files) fs.rmSync(f, { force: true })
    })
  }

  static async start(binary: string): Promise<CLoadProcess> {
    const p = new CLoadProcess(spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] }))
    await p.ready
    return p
  }

  get pid(): number {
    return this.child.pid ?? 0
  }

  request<T = Reply>(op: string, args: Reply = {}): Promise<T> {
    return op === 'init' ? (this.init(args) as Promise<T>) : this.send<T>(op, args)
  }

  private send<T>(op: string, args: Reply): Promise<T> {
    const seq = this.seq++
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(seq, { resolve: resolve as (r: Reply) => void, reject })
      this.child.stdin!.write(requestLine(seq, op, args))
    })
  }

  /** the toys this process owns, as the C generator reads them: a line `toy <id>`, then the
   * key and the certificate chain in PEM */
  private async init(args: Reply): Promise<Reply> {
    const all = JSON.parse(fs.readFileSync(args.toysFile as string, 'utf8')) as ToyCredentials[]
    const mine = new Set(args.ids as string[])
    const base = path.join(path.dirname(args.toysFile as string), `loadgen-c-${this.pid}`)
    const toysFile = `${base}-toys.txt`
    const caFile = `${base}-ca.pem`
    const text = all.filter((t) => mine.has(t.id)).map((t) => `toy ${t.id}\n${t.keyPem.trim()}\n${t.certPem.trim()}\n`)
    fs.writeFileSync(toysFile, text.join(''), { mode: 0o600 })
    fs.writeFileSync(caFile, args.caPem as string)
    this.files.push(toysFile, caFile)
    return this.send('init', { toys: toysFile, ca: caFile })
  }

  kill(): void {
    this.child.kill()
  }
}
