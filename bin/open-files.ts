import fs from 'node:fs'
import type { Logger } from '../infra/log.ts'

// R9 (availability): every TCP connection, idle or not, holds a file descriptor, and with 1,024 a
// thousand idle sockets were enough to refuse toys and /healthz. Node raises its soft limit to the
// hard limit when it starts (node.cc, PlatformInit), so what remains is the hard limit the service
// manager gives the process: kennel reports it, and warns when it is low.

/** below this many descriptors a fleet's connections, or a burst of idle ones, can exhaust them */
export const RECOMMENDED_OPEN_FILES = 65_536

export interface OpenFileLimit {
  soft: number
  hard: number
}

/** RLIMIT_NOFILE from /proc (Linux); undefined elsewhere */
export function readOpenFileLimit(file = '/proc/self/limits'): OpenFileLimit | undefined {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text)
  if (!m) return undefined
  const value = (s: string): number => (s === 'unlimited' ? Infinity : Number(s))
  return { soft: value(m[1]!), hard: value(m[2]!) }
}

export function reportOpenFileLimit(log: Logger): void {
  const limit = readOpenFileLimit()
  if (limit === undefined) return void log.info('open-file limit unknown (no /proc/self/limits)')
  if (limit.soft >= RECOMMENDED_OPEN_FILES) return void log.info(limit, 'open-file limit')
  log.warn(
    { ...limit, recommended: RECOMMENDED_OPEN_FILES },
    `open-file limit is ${limit.soft} (hard ${limit.hard}): each connection holds one, so a few hundred idle sockets can lock toys out. ` +
      `Raise the hard limit to at least ${RECOMMENDED_OPEN_FILES} (systemd LimitNOFILE=, docker --ulimit nofile=, or ulimit -n in the shell that starts kennel)`,
  )
}
