import type { Socket } from 'node:net'
import { constants } from 'node:crypto'
import tls, { type TLSSocket } from 'node:tls'
import type { Denylist } from '../infra/net/denylist.ts'
import { serverTlsOptions, type ServerTlsMaterial, type TlsPolicy } from '../infra/net/tls.ts'
import type { UnauthenticatedConnections } from '../infra/net/unauthenticated.ts'

// The MQTT listener: mutual TLS only (plain MQTT is not offered). Every handshake is accepted
// (rejectUnauthorized: false) so that the broker can record why a certificate was refused
// (Node leaves the verdict on `socket.authorized` / `authorizationError`); the denylist and the cap on unauthenticated connections are applied to the
// raw TCP connection, before TLS, and the handshake has a deadline from accept (R9).

export type TlsMaterial = ServerTlsMaterial

export interface ListenerHooks {
  denylist: Denylist
  /** a connection from a denylisted address, before it is destroyed; `cidr` is the entry it matched */
  onDenied(socket: Socket, cidr: string): void
  /** counts each connection until the broker sends CONNACK 0 */
  unauthenticated: UnauthenticatedConnections
  onSecureConnection(socket: TLSSocket): void
  onTlsError(err: Error, socket: TLSSocket): void
}

export function createListener(config: TlsPolicy, material: TlsMaterial, hooks: ListenerHooks): tls.Server {
  const server = tls.createServer({
    ...listenerTlsOptions(config, material),
    // Nagle's algorithm holding the server's last handshake flight until the toy's delayed ACK
    // costs ~40 ms per TLS 1.3 connect
    noDelay: true,
  })
  // 'connection' fires before the TLS handshake starts reading from the socket
  server.on('connection', (socket: Socket) => {
    const cidr = hooks.denylist(socket.remoteAddress)
    if (cidr !== undefined) {
      hooks.onDenied(socket, cidr)
      socket.destroy()
      return
    }
    hooks.unauthenticated.admit(socket)
  })
  server.on('secureConnection', (socket: TLSSocket) => {
    hooks.unauthenticated.secured(socket)
    hooks.onSecureConnection(socket)
  })
  // a tls.Server reports a failed or timed-out handshake and leaves the socket open: close it
  server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
    socket.destroy()
    hooks.onTlsError(err, socket)
  })
  return server
}

/** Swap the trusted device CAs and the server certificate without a restart (a CA rollover made
 * by another process, R18); live connections keep the chain they were verified with. */
export function reloadListenerTls(server: tls.Server, config: TlsPolicy, material: TlsMaterial): void {
  server.setSecureContext(listenerTlsOptions(config, material))
}

// setSecureContext replaces every context option, secureOptions included: both paths use this.
function listenerTlsOptions(config: TlsPolicy, material: TlsMaterial): tls.TlsOptions {
  return {
    ...serverTlsOptions(config, material),
    // No session resumption: every connect verifies the certificate chain against the current
    // trust store and CRL, and the tickets cost ≈ 15 KB per TLS 1.3 connection (bench/broker.ts)
    secureOptions: constants.SSL_OP_NO_TICKET,
  }
}
