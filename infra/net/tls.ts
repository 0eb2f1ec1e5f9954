import type { TlsOptions } from 'node:tls'
import type { Config } from '../config.ts'

// One TLS policy for every listener (R18): TLS 1.2 minimum, 1.3 preferred, the configured
// suites and curves in the server's order. The handshake asks for a client certificate but does
// not reject one it cannot verify, so that the broker and the API can record why (Node
// then leaves the verdict on `socket.authorized` / `authorizationError`) and parents can reach the API without a certificate.

export interface ServerTlsMaterial {
  /** every trusted device CA certificate, PEM */
  ca: string
  /** server certificate chain, PEM */
  cert: string
  /** server private key, PEM */
  key: string
}

export type TlsPolicy = Pick<Config, 'tlsMinVersion' | 'tlsCiphers' | 'tlsCurves' | 'tlsHandshakeTimeoutSeconds'>

export function serverTlsOptions(config: TlsPolicy, material: ServerTlsMaterial): TlsOptions {
  return {
    ca: material.ca,
    cert: material.cert,
    key: material.key,
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: config.tlsMinVersion,
    ciphers: config.tlsCiphers,
    ecdhCurve: config.tlsCurves,
    honorCipherOrder: true,
    // Node's own timer only reports the timeout ('tlsClientError') and is set when the TLS socket
    // is made, just before the listener's deadline from accept (unauthenticated.ts) that closes
    // the connection; twice as long, it stays a backstop that never fires first
    handshakeTimeout: 2 * config.tlsHandshakeTimeoutSeconds * 1000,
  }
}
