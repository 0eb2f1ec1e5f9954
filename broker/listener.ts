import type { Socket } from 'node:net'
import { constants } from 'node:crypto'
import tls, { type TLSSocket } from 'node:tls'
import type { Config } from '../infra/config.ts'
import type { Denylist } from '../infra/net/denylist.ts'
import { serverTlsOptions, type ServerTlsMaterial } from '../infra/net/tls.ts'

// The MQTT listener: mutual TLS only (plain MQTT is not offered). Every handshake is accepted
// (rejectUnauthorized: false) so that the broker can record why a certificate was refused
// (FIELD-NOTES, TLS); the denylist is applied to the raw TCP connection, before TLS (R9).

export type TlsMaterial = ServerTlsMaterial

export interface ListenerHooks {
  denylist: Denylist
  onDenied(socket: Socket): void
  onSecureConnection(socket: TLSSocket): void
  onTlsError(err: Error, socket: TLSSocket): void
}

export function createListener(config: Pick<Config, 'tlsMinVersion' | 'tlsCiphers' | 'tlsCurves'>, material: TlsMaterial, hooks: ListenerHooks): tls.Server {
  const server = tls.createServer({
    ...listenerTlsOptions(config, material),
    // Nagle + delayed ACK cost ~40 ms per TLS 1.3 connect (FIELD-NOTES)
    noDelay: true,
  })
  // 'connection' fires before the TLS handshake starts reading from the socket
  server.on('connection', (socket: Socket) => {
    if (hooks.denylist(socket.remoteAddress)) {
      hooks.onDenied(socket)
      socket.destroy()
    }
  })
  server.on('secureConnection', hooks.onSecureConnection)
  server.on('tlsClientError', hooks.onTlsError)
  return server
}

/** Swap the trusted device CAs and the server certificate without a restart (a CA rollover made
 * by another process, R18); live connections keep the chain they were verified with. */
export function reloadListenerTls(server: tls.Server, config: Pick<Config, 'tlsMinVersion' | 'tlsCiphers' | 'tlsCurves'>, material: TlsMaterial): void {
  server.setSecureContext(listenerTlsOptions(config, material))
}

// setSecureContext replaces every context option, secureOptions included: both paths use this.
function listenerTlsOptions(config: Pick<Config, 'tlsMinVersion' | 'tlsCiphers' | 'tlsCurves'>, material: TlsMaterial): tls.TlsOptions {
  return {
    ...serverTlsOptions(config, material),
    // No session resumption: every connect verifies the certificate chain against the current
    // trust store and CRL, and the tickets cost ≈ 15 KB per TLS 1.3 connection (bench/broker.ts)
    secureOptions: constants.SSL_OP_NO_TICKET,
  }
}
