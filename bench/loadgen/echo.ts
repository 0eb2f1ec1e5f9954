import { LatencyHistogram, type SparseHistogram } from './histogram.ts'
import {
  PUBACK,
  PUBLISH,
  PublishTemplate,
  pubackPacket,
  readPublish,
  SUBACK,
  subscribePacket,
  type PublishView,
} from './packets.ts'
import { openSession, type Target, type ToyCredentials, type ToySession, wallNow } from './session.ts'

// The echo load: each toy subscribes to `toys/{id}/echo` and publishes 64-byte messages to it,
// keeping up to `window` in flight — at QoS 1 publishes not yet acknowledged by PUBACK, at QoS 0
// messages sent and not yet received back — and refilling the window as they come back, so the
// broker, not a fixed rate, sets the pace. Each payload carries its send time and a per-toy
// sequence number: latency is receive time − send time in this process, and at QoS 1 every
// acknowledged message must come back exactly once.

export interface EchoOptions {
  qos: 0 | 1
  window: number
  warmupMs: number
  measureMs: number
  /** how long to wait after the last send for messages still in flight */
  drainMs: number
}

export interface EchoResult {
  toys: number
  /** messages received back during the measured interval */
  received: number
  measuredMs: number
  /** the measured interval, wall-clock ms */
  window: [number, number]
  cpuMs: number
  latency: SparseHistogram
  sent: number
  /** QoS 1: publishes the broker acknowledged */
  acked: number
  uniqueReceived: number
  duplicates: number
  /** QoS 1: acknowledged but never delivered back; QoS 0: sent but never received */
  lost: number
  /** messages of windows given up after 10 s without progress (dropped, or the broker stalled) */
  stalled: number
}

const STALL_MS = 10_000

class EchoToy {
  inflight = 0
  seq = 0
  acked = 0
  uniqueReceived = 0
  duplicates = 0
  stalled = 0
  lastProgress = performance.now()
  private seen = new Uint8Array(4096)
  private readonly unacked = new Uint8Array(65536)
  private pubacks: number[] = []
  private credit = 0
  private readonly template: PublishTemplate
  private readonly view: PublishView = { qos: 0, packetId: 0, sentAt: 0, seq: 0 }
  subscribed!: Promise<void>

  constructor(
    readonly session: ToySession,
    private readonly run: EchoRun,
  ) {
    this.template = new PublishTemplate(`toys/${session.toy.id}/echo`, run.opts.qos)
  }

  start(): void {
    this.subscribed = new Promise((resolve, reject) => {
      this.session.onPacket((header, buf, start, end) => {
        const type = header >> 4
        if (type === PUBLISH) this.delivered(header, buf, start, end)
        else if (type === PUBACK) this.acknowledged(buf.readUInt16BE(start))
        else if (type === SUBACK)
          buf[start + 2]! < 0x80
            ? resolve()
            : reject(new Error(`subscription to toys/${this.session.toy.id}/echo refused`))
      })
    })
    // once this turn's reads are handled: one write for all their PUBACKs and new publishes
    this.session.socket.on('data', () => this.scheduleFlush())
    this.session.socket.write(subscribePacket(`toys/${this.session.toy.id}/echo`, this.run.opts.qos))
  }

  private delivered(header: number, buf: Buffer, start: number, end: number): void {
    const p = readPublish(header, buf, start, end, this.view)
    if (p.qos > 0) this.pubacks.push(p.packetId)
    if (p.seq < 0) return
    const now = performance.now()
    this.lastProgress = now
    if (p.seq >= this.seen.length) this.grow(p.seq)
    if (this.seen[p.seq] === 1) {
      this.duplicates++
      return
    }
    this.seen[p.seq] = 1
    this.uniqueReceived++
    this.run.received(now - p.sentAt)
    // a message of a window given up as stalled no longer holds a place in it
    if (this.run.opts.qos === 0 && this.inflight > 0) {
      this.inflight--
      this.credit++
    }
  }

  private acknowledged(packetId: number): void {
    if (this.unacked[packetId] !== 1) return
    this.unacked[packetId] = 0
    this.acked++
    this.inflight--
    this.credit++
    this.lastProgress = performance.now()
  }

  private grow(seq: number): void {
    let size = this.seen.length
    while (size <= seq) size *= 2
    const seen = new Uint8Array(size)
    seen.set(this.seen)
    this.seen = seen
  }

  private flushScheduled = false
  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    setImmediate(() => {
      this.flushScheduled = false
      this.flush()
    })
  }

  /** write the pending PUBACKs and as many new publishes as the window allows */
  flush(): void {
    const count = this.run.sending ? Math.min(this.credit, this.run.opts.window - this.inflight) : 0
    this.credit = 0
    if (count <= 0 && this.pubacks.length === 0) return
    const out = Buffer.allocUnsafe(this.pubacks.length * 4 + Math.max(0, count) * this.template.bytes.length)
    let at = 0
    for (const id of this.pubacks) at = pubackPacket(out, at, id)
    this.pubacks = []
    const now = performance.now()
    for (let i = 0; i < count; i++) {
      const seq = this.seq++
      const packetId = (seq % 65535) + 1
      if (this.run.opts.qos === 1) this.unacked[packetId] = 1
      at = this.template.writeInto(out, at, now, seq, packetId)
    }
    this.inflight += Math.max(0, count)
    this.session.socket.write(out)
  }

  /** a window that made no progress for STALL_MS is given up, so that a dropped message cannot
   * stop the toy for the rest of the run */
  checkStall(now: number): void {
    if (this.inflight === 0 || now - this.lastProgress < STALL_MS) return
    this.stalled += this.inflight
    this.inflight = 0
    this.unacked.fill(0)
    this.credit = this.run.opts.window
    this.lastProgress = now
    this.flush()
  }

  get settled(): boolean {
    return this.run.opts.qos === 1 ? this.inflight === 0 && this.uniqueReceived >= this.acked : this.inflight === 0
  }

  begin(): void {
    this.credit = this.run.opts.window
    this.flush()
  }
}

class EchoRun {
  sending = true
  measuring = false
  count = 0
  readonly latency = new LatencyHistogram()
  constructor(readonly opts: EchoOptions) {}

  received(latencyMs: number): void {
    if (!this.measuring) return
    this.count++
    this.latency.record(latencyMs)
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** An echo load in two steps, so that every load process has its toys connected and subscribed
 * before any of them starts sending: otherwise one process's measured interval would overlap
 * another's set-up. */
export class EchoLoad {
  private constructor(
    private readonly sessions: ToySession[],
    private readonly echoes: EchoToy[],
    private readonly run: EchoRun,
  ) {}

  static async prepare(toys: ToyCredentials[], target: Target, opts: EchoOptions): Promise<EchoLoad> {
    const run = new EchoRun(opts)
    const sessions = await Promise.all(toys.map((t) => openSession(t, target)))
    const echoes = sessions.map((s) => new EchoToy(s, run))
    const load = new EchoLoad(sessions, echoes, run)
    try {
      for (const e of echoes) e.start()
      await Promise.all(echoes.map((e) => e.subscribed))
    } catch (err) {
      await load.close()
      throw err
    }
    return load
  }

  async measure(): Promise<EchoResult> {
    const { run, echoes } = this
    const opts = run.opts
    try {
      const watchdog = setInterval(() => {
        const now = performance.now()
        for (const e of echoes) e.checkStall(now)
      }, 250)
      for (const e of echoes) e.begin()
      await sleep(opts.warmupMs)
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      const window: [number, number] = [wallNow(), NaN]
      run.measuring = true
      await sleep(opts.measureMs)
      run.measuring = false
      const measuredMs = performance.now() - t0
      window[1] = wallNow()
      const cpu = process.cpuUsage(cpu0)
      run.sending = false
      const drainUntil = performance.now() + opts.drainMs
      while (!echoes.every((e) => e.settled) && performance.now() < drainUntil) await sleep(20)
      clearInterval(watchdog)
      const sum = (f: (e: EchoToy) => number): number => echoes.reduce((s, e) => s + f(e), 0)
      const sent = sum((e) => e.seq)
      const acked = sum((e) => e.acked)
      const uniqueReceived = sum((e) => e.uniqueReceived)
      return {
        toys: echoes.length,
        received: run.count,
        measuredMs,
        window,
        cpuMs: (cpu.user + cpu.system) / 1000,
        latency: run.latency.toSparse(),
        sent,
        acked,
        uniqueReceived,
        duplicates: sum((e) => e.duplicates),
        lost: Math.max(0, (opts.qos === 1 ? acked : sent) - uniqueReceived),
        stalled: sum((e) => e.stalled),
      }
    } finally {
      await this.close()
    }
  }

  private async close(): Promise<void> {
    for (const s of this.sessions) s.disconnect()
    await Promise.race([Promise.all(this.sessions.map((s) => s.closed)), sleep(5000)])
    for (const s of this.sessions) s.destroy()
  }
}
