import fs from 'node:fs'
import { runConnects, type ConnectsOptions } from './connects.ts'
import { EchoLoad, type EchoOptions } from './echo.ts'
import {
  ConnectRefused,
  openSession,
  prepareContexts,
  wallNow,
  type Target,
  type ToyCredentials,
  type ToySession,
} from './session.ts'

// A load process (forked by pool.ts): it holds toys' sessions and runs the loads the driver asks
// for, answering each request { seq, op, ... } with { seq, ... }. Several of them run side by
// side so that the generator is not the bottleneck; each reports its own CPU time.

type Request = { seq: number; op: string; [k: string]: unknown }
type Reply = Record<string, unknown>

let toys = new Map<string, ToyCredentials>()
let target: Target | undefined
const held = new Map<string, ToySession>()
let echo: EchoLoad | undefined

const toysOf = (ids: unknown): ToyCredentials[] =>
  (ids as string[]).map((id) => toys.get(id) ?? fail(`unknown toy ${id}`))
const targetOf = (): Target => target ?? fail('no target set')
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
function fail(message: string): never {
  throw new Error(message)
}

const handlers: Record<string, (m: Request) => Promise<Reply> | Reply> = {
  init(m) {
    const all = JSON.parse(fs.readFileSync(m.toysFile as string, 'utf8')) as ToyCredentials[]
    const mine = new Set(m.ids as string[])
    toys = new Map(all.filter((t) => mine.has(t.id)).map((t) => [t.id, t]))
    target = { port: 0, caPem: m.caPem as string }
    prepareContexts(toys.values(), target.caPem)
    return { toys: toys.size }
  },
  target(m) {
    target = { ...targetOf(), port: m.port as number }
    return {}
  },
  /** connect these toys and keep them connected, `concurrency` at a time */
  async hold(m) {
    const list = toysOf(m.ids)
    const refused: Record<string, number> = {}
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: m.concurrency as number }, async () => {
        while (next < list.length) {
          const toy = list[next++]!
          try {
            held.set(toy.id, await openSession(toy, targetOf()))
          } catch (err) {
            const what = err instanceof ConnectRefused ? err.outcome : String(err)
            refused[what] = (refused[what] ?? 0) + 1
          }
        }
      }),
    )
    return { held: held.size, refused, cpuMs: cpuMs(process.cpuUsage(cpu0)), wallMs: performance.now() - t0 }
  },
  /** disconnect every held session */
  async release() {
    const sessions = [...held.values()]
    held.clear()
    for (const s of sessions) s.disconnect()
    await Promise.race([Promise.all(sessions.map((s) => s.closed)), sleep(10_000)])
    for (const s of sessions) s.destroy()
    return {}
  },
  /** answers when the held session of this toy closes (or at the timeout, with NaN) */
  async watch(m) {
    const s = held.get(m.id as string)
    if (!s) return { closedAt: NaN }
    const closedAt = await Promise.race([s.closed, sleep(m.timeoutMs as number).then(() => NaN)])
    if (!Number.isNaN(closedAt)) held.delete(s.toy.id)
    return { closedAt }
  },
  isOpen: (m) => ({ open: held.get(m.id as string)?.socket.destroyed === false }),
  /** one connect attempt; an accepted session is disconnected at once */
  async tryConnect(m) {
    try {
      const s = await openSession(toysOf([m.id])[0]!, targetOf())
      s.disconnect()
      return { outcome: 'accepted' }
    } catch (err) {
      return { outcome: err instanceof ConnectRefused ? err.outcome : String(err) }
    }
  },
  connects: (m) => runConnects(toysOf(m.ids), targetOf(), m.opts as ConnectsOptions) as unknown as Reply,
  /** connect and subscribe the echo load's toys; `echoMeasure` then runs it */
  async echoPrepare(m) {
    echo = await EchoLoad.prepare(toysOf(m.ids), targetOf(), m.opts as EchoOptions)
    return {}
  },
  async echoMeasure() {
    const load = echo ?? fail('no echo load prepared')
    echo = undefined
    return (await load.measure()) as unknown as Reply
  },
}

function cpuMs(c: NodeJS.CpuUsage): number {
  return (c.user + c.system) / 1000
}

process.on('message', (m: Request) => {
  Promise.resolve()
    .then(() => handlers[m.op]?.(m) ?? fail(`unknown op ${m.op}`))
    .then(
      (r) => process.send!({ ...r, seq: m.seq, at: wallNow() }),
      (err: Error) => process.send!({ seq: m.seq, error: err.message }),
    )
})
process.send!({ ready: true })
