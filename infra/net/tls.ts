import type { TlsOptions } from 'node:tls'
import type { Config } from '../config.ts'

// One TLS policy for every listener (R18): TLS 1.2 minimum, 1.3 preferred, the configured
// suites and curves in the server's order. The handshake asks for a client certificate but does
// not reject one it cannot verify, so that the broker and the API can record why (FIELD-NOTES,
// TLS) and parents can reach the API without a certificate.

export interface ServerTlsMaterial {
  /** every trusted device CA certificate, PEM */
  ca: string
  /** server certificate chain, PEM */
  cert: string
  /** server private key, PEM */
  key: string
}

/** a slow or silent peer gets this long to finish the handshake */
export const HANDSHAKE_TIMEOUT_MS = 10_000

export function serverTlsOptions(config: Pick<Config, 'tlsMinVersion' | 'tlsCiphers' | 'tlsCurves'>, material: ServerTlsMaterial): TlsOptions {
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
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  }
}
