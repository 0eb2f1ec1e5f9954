import tls from 'node:tls'
import { CONNACK, connectPacket, DISCONNECT_PACKET, PacketReader, type PacketHandler } from './packets.ts'

// One toy's MQTT session over mutual TLS on a raw socket: the TLS handshake with the toy's own
// certificate, CONNECT, CONNACK. Nagle is off: with it on, a TLS 1.3 connect waits ~40 ms on a
// delayed ACK and small messages queue behind each other.

export interface ToyCredentials {
  id: string
  keyPem: string
  certPem: string
}

export interface Target {
  port: number
  caPem: string
}

/** Wall-clock time in ms with sub-ms precision, comparable across the bench's processes. */
export const wallNow = (): number => performance.timeOrigin + performance.now()

export class ConnectRefused extends Error {
  constructor(readonly outcome: string) {
    super(outcome)
  }
}

const contexts = new Map<string, tls.SecureContext>()

/** Secure contexts are built once per toy: parsing the key and chain is not part of a connect. */
function contextOf(toy: ToyCredentials, caPem: string): tls.SecureContext {
  let ctx = contexts.get(toy.id)
  if (!ctx) contexts.set(toy.id, (ctx = tls.createSecureContext({ key: toy.keyPem, cert: toy.certPem, ca: caPem })))
  return ctx
}

export function prepareContexts(toys: Iterable<ToyCredentials>, caPem: string): void {
  for (const toy of toys) contextOf(toy, caPem)
}

export class ToySession {
  /** resolves with the wall-clock time the socket closed */
  readonly closed: Promise<number>
  private readonly reader: PacketReader

  constructor(
    readonly toy: ToyCredentials,
    readonly socket: tls.TLSSocket,
    reader: PacketReader,
  ) {
    this.reader = reader
    this.closed = new Promise((resolve) => socket.once('close', () => resolve(wallNow())))
  }

  /** route every packet after CONNACK to `handler` */
  onPacket(handler: PacketHandler): void {
    this.reader.onPacket = handler
  }

  disconnect(): void {
    if (!this.socket.destroyed) this.socket.end(DISCONNECT_PACKET)
  }

  destroy(): void {
    this.socket.destroy()
  }
}

/** Connect and wait for CONNACK; a refused or failed connect rejects with a ConnectRefused
 * naming what happened (CONNACK code, or the socket error before CONNACK). */
export function openSession(toy: ToyCredentials, target: Target, keepalive = 600): Promise<ToySession> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: target.port,
      servername: 'localhost',
      secureContext: contextOf(toy, target.caPem),
    })
    socket.setNoDelay(true)
    let error = ''
    let settled = false
    const reader = new PacketReader((header, buf, start) => {
      if (settled || header >> 4 !== CONNACK) return
      settled = true
      const code = buf[start + 1]!
      if (code === 0) return resolve(new ToySession(toy, socket, reader))
      socket.destroy()
      reject(new ConnectRefused(`refused (CONNACK ${code})`))
    })
    socket.once('secureConnect', () => socket.write(connectPacket(toy.id, keepalive)))
    socket.on('data', (chunk: Buffer) => reader.push(chunk))
    socket.on('error', (err: NodeJS.ErrnoException) => (error ||= err.code ?? err.message))
    socket.once('close', () => {
      if (settled) return
      settled = true
      reject(new ConnectRefused(`closed before CONNACK${error ? ` (${error})` : ''}`))
    })
  })
}
