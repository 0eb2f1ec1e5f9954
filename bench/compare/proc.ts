import { execFileSync } from 'node:child_process'
import fs from 'node:fs'

// A broker's memory and CPU from /proc, summed over its process tree: kennel may run several
// processes (workers, a cluster), and a figure for the root process alone would flatter it.
// RSS is VmRSS (resident pages, shared ones counted in each process that maps them).

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100

function statOf(pid: number): string[] | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** the process and all its descendants */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>()
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const ppid = Number(statOf(Number(name))?.[1])
    if (Number.isFinite(ppid)) children.set(ppid, [...(children.get(ppid) ?? []), Number(name)])
  }
  const out: number[] = []
  const queue = [root]
  while (queue.length > 0) {
    const pid = queue.shift()!
    out.push(pid)
    queue.push(...(children.get(pid) ?? []))
  }
  return out
}

export function treeRssKB(root: number): number {
  let kb = 0
  for (const pid of processTree(root)) {
    try {
      const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
      kb += Number(m?.[1] ?? 0)
    } catch {
      // exited between the listing and the read
    }
  }
  return kb
}

/** user + system CPU time of these processes, in ms (clock-tick resolution, 10 ms on most kernels) */
export function cpuMs(pids: number[]): number {
  let ticks = 0
  for (const pid of pids) {
    const f = statOf(pid)
    // fields 14 and 15 (utime, stime) are at 11 and 12 once pid and comm are cut off
    if (f) ticks += Number(f[11]) + Number(f[12])
  }
  return (ticks / CLOCK_TICKS) * 1000
}

/** CPU time the whole machine spent busy (all cores: user, nice, system, irq, softirq, steal), in ms */
export function machineBusyMs(): number {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields
  return ((user + nice + system + irq + softirq + steal) / CLOCK_TICKS) * 1000
}
