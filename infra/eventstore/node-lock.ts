import fs from 'node:fs'
import os from 'node:os'
import { KennelError } from '../errors.ts'

// The embedded SQLite store belongs to one node at a time: two `kennel start` on one file would
// both project, sign tree heads and deliver alerts, each believing it is the only one. A node
// takes `<store>.lock` (created exclusively, holding its host, boot and pid) before it opens the
// store and removes it when it stops. A lock left by a node that died is taken over when it was
// written on this host and its process is gone (or the host has rebooted since); one from
// another host (a store on a shared volume) is refused, and the message says what to remove.
// The CLI does not take it: `kennel device enroll` appends to the store a running node follows.

export interface NodeLock {
  readonly file: string
  release(): void
}

interface Holder {
  hostname: string
  /** /proc/sys/kernel/random/boot_id where there is one: a pid is only meaningful within a boot */
  bootId: string | undefined
  pid: number
  since: string
}

/** locks taken by this process: a file naming this pid that is not among them is a former
 * process's (a restarted container often runs with the same pid) */
const held = new Set<string>()

export function lockEmbeddedStore(storeFile: string): NodeLock {
  const file = `${storeFile}.lock`
  const me: Holder = { hostname: os.hostname(), bootId: bootId(), pid: process.pid, since: new Date().toISOString() }
  for (let attempt = 0; ; attempt++) {
    // written whole under another name, then linked into place: no one ever reads half a lock
    const draft = `${file}.${me.pid}.${attempt}.tmp`
    fs.writeFileSync(draft, `${JSON.stringify(me)}\n`, { mode: 0o600 })
    try {
      fs.linkSync(draft, file)
      held.add(file)
      return { file, release: () => release(file, me) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err
    } finally {
      fs.rmSync(draft, { force: true })
    }
    const holder = readHolder(file)
    if (holder !== undefined && !isStale(holder, file, me)) {
      throw new KennelError(
        'KENNEL_ERR_STORE_IN_USE',
        `the embedded event store ${storeFile} is in use by the kennel node on ${holder.hostname} (pid ${holder.pid}) since ${holder.since}: one node per embedded store; run several nodes on PostgreSQL (KENNEL_EVENTSTORE=postgres://…). If that node is gone, remove ${file}`,
        { file, holder: { hostname: holder.hostname, pid: holder.pid, since: holder.since } },
      )
    }
    // a dead node's lock (or one too mangled to name anyone): taken over
    fs.rmSync(file, { force: true })
  }
}

function isStale(holder: Holder, file: string, me: Holder): boolean {
  if (holder.hostname !== me.hostname) return false
  if (holder.bootId !== undefined && me.bootId !== undefined && holder.bootId !== me.bootId) return true
  if (holder.pid === me.pid) return !held.has(file)
  return !alive(holder.pid)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, under another user
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

function readHolder(file: string): Holder | undefined {
  try {
    const h = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Holder>
    if (typeof h.hostname === 'string' && Number.isSafeInteger(h.pid) && typeof h.since === 'string')
      return {
        hostname: h.hostname,
        bootId: typeof h.bootId === 'string' ? h.bootId : undefined,
        pid: h.pid!,
        since: h.since,
      }
  } catch {
    // unreadable or half-written
  }
  return undefined
}

function bootId(): string | undefined {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return undefined
  }
}

function release(file: string, me: Holder): void {
  if (!held.delete(file)) return
  const holder = readHolder(file)
  if (holder?.pid === me.pid && holder.since === me.since && holder.hostname === me.hostname)
    fs.rmSync(file, { force: true })
}
