import type { Socket } from 'node:net'
import { FoldedRefusals } from './folded-refusals.ts'

// R9 (availability): a TCP connection costs a file descriptor from accept on, and anyone who can
// reach a port can open one without a certificate. Each listener therefore bounds what a peer
// may hold before it has shown who it is ("unauthenticated": from accept until the broker sent
// CONNACK 0, or the API received the first complete request head):
// - a deadline from accept to the end of the TLS handshake, then one from the handshake to
//   authentication. Node's own `handshakeTimeout` only emits 'tlsClientError' on a tls.Server
//   and leaves the socket open, and the HTTP server's headersTimeout does not reach a TLS
//   connection that never starts a request; both were measured holding sockets for minutes;
// - a cap per source on such connections, checked on accept, before TLS. A source is an IPv4
//   address, or an IPv6 /64 (one customer's network: anyone who has one address has them all).
//   Refusals are recorded per source and minute: the first at once, the rest as one record.

export type Phase = 'handshake' | 'connect'

export interface UnauthenticatedLimits {
  handshakeTimeoutMs: number
  /** from the end of the handshake until authenticated */
  connectTimeoutMs: number
  /** unauthenticated connections one source may hold on this listener */
  maxPerSource: number
}

export interface Refusal {
  ip: string
  source: string
  cap: number
}

export interface UnauthenticatedHooks {
  /** each connection refused on accept because its source holds `cap` already (the socket is destroyed) */
  onRefused(refusal: Refusal): void
  /** records `refusals` refusals of a source, the latest of which was `refusal`; reports its own errors */
  record(refusal: Refusal, refusals: number): Promise<void>
  /** a connection closed because a deadline passed (the socket is destroyed) */
  onTimeout(phase: Phase, ip: string): void
}

interface Pending {
  key: string
  source: string
  ip: string
  socket: Socket
  timer: NodeJS.Timeout
  /** the sockets whose 'close' releases the entry (the raw one, then the TLS one) */
  watched: Socket[]
  onClose: () => void
}

/** the unit a cap counts: IPv4 (also IPv4-mapped) addresses whole, IPv6 by their /64 */
export function sourceOf(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip)
  if (mapped) return mapped[1]!
  if (!ip.includes(':')) return ip
  const address = ip.split('%')[0]!
  const groups = (s: string): string[] =>
    s === '' ? [] : s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]))
  const [head = '', tail] = address.split('::')
  const left = groups(head)
  const right = tail === undefined ? [] : groups(tail)
  const full = [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
  return `${full
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`
}

/** the TCP connection's four-tuple: the same for the raw socket on accept and the TLS socket wrapping it */
const connectionKey = (s: Socket): string => `${s.remoteAddress} ${s.remotePort} ${s.localAddress} ${s.localPort}`

const REFUSAL_BLOCK_MS = 60_000

export class UnauthenticatedConnections {
  private readonly pending = new Map<string, Pending>()
  private readonly perSource = new Map<string, number>()
  private readonly refusals: FoldedRefusals<Refusal>

  constructor(
    private readonly limits: UnauthenticatedLimits,
    private readonly hooks: UnauthenticatedHooks,
  ) {
    this.refusals = new FoldedRefusals(REFUSAL_BLOCK_MS, hooks.record)
  }

  /** on TCP accept (the raw socket, before TLS): false when refused; the socket is then destroyed */
  admit(socket: Socket): boolean {
    const ip = socket.remoteAddress
    if (ip === undefined) {
      socket.destroy()
      return false
    }
    const source = sourceOf(ip)
    const held = this.perSource.get(source) ?? 0
    if (held >= this.limits.maxPerSource) {
      socket.destroy()
      const refusal = { ip, source, cap: this.limits.maxPerSource }
      this.hooks.onRefused(refusal)
      if (this.refusals.count(source, Date.now(), refusal)) void this.hooks.record(refusal, 1)
      return false
    }
    this.perSource.set(source, held + 1)
    const entry: Pending = {
      key: connectionKey(socket),
      source,
      ip,
      socket,
      timer: this.deadline('handshake', socket, ip, this.limits.handshakeTimeoutMs),
      watched: [socket],
      onClose: () => this.release(entry),
    }
    this.pending.set(entry.key, entry)
    socket.once('close', entry.onClose)
    return true
  }

  /** the TLS handshake finished: the connect deadline starts */
  secured(socket: Socket): void {
    const entry = this.pending.get(connectionKey(socket))
    if (entry === undefined) return
    clearTimeout(entry.timer)
    entry.socket = socket
    entry.timer = this.deadline('connect', socket, entry.ip, this.limits.connectTimeoutMs)
    entry.watched.push(socket)
    socket.once('close', entry.onClose)
  }

  /** the peer is authenticated: no deadline, no longer counted */
  authenticated(socket: Socket): void {
    const entry = this.pending.get(connectionKey(socket))
    if (entry !== undefined) this.release(entry)
  }

  /** connections not yet authenticated */
  get size(): number {
    return this.pending.size
  }

  /** on shutdown: a server does not close while these are open */
  destroyAll(): void {
    for (const entry of [...this.pending.values()]) entry.socket.destroy()
  }

  /** record the refusals tallied since each source's last record (on shutdown) */
  flush(): Promise<void> {
    return this.refusals.flush()
  }

  private deadline(phase: Phase, socket: Socket, ip: string, ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      socket.destroy()
      this.hooks.onTimeout(phase, ip)
    }, ms).unref()
  }

  private release(entry: Pending): void {
    if (this.pending.get(entry.key) !== entry) return
    clearTimeout(entry.timer)
    this.pending.delete(entry.key)
    // an authenticated connection lives on for hours: nothing of its admission stays attached to it
    for (const socket of entry.watched) socket.off('close', entry.onClose)
    const left = (this.perSource.get(entry.source) ?? 1) - 1
    if (left > 0) this.perSource.set(entry.source, left)
    else this.perSource.delete(entry.source)
  }
}
