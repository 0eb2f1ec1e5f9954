import type { TLSSocket } from 'node:tls'
import { isDeviceId } from '../devices/device-id.ts'
import { normalizeSerial } from '../devices/registry.ts'
import type { AuthFailureReason } from './events.ts'

// R2: the verified client certificate is the toy's identity; device id = subject CN. The TLS
// listener accepts every handshake (rejectUnauthorized: false) so that a refusal can be recorded
// with its reason; this file turns the handshake's verdict and the device registry's answer
// into an identity or a reason.

export interface PeerIdentity {
  deviceId: string
  /** lowercase hex, no colons or leading zeros (docs/EVENTS.md) */
  serial: string
  /** SHA-256 of the certificate DER, lowercase hex */
  fingerprint: string
  ip: string
}

export interface PeerRefusal {
  reason: AuthFailureReason
  ip: string
  fingerprint?: string
  deviceId?: string
  serial?: string
  detail?: string
  /** the certificate chains to the device CA, so deviceId names a device we issued to */
  trusted: boolean
}

/** The device registry's verdict on a certificate (devices/registry.ts checkCertificate). */
export type CertificateCheck = (
  deviceId: string,
  serial: string,
  now: Date,
) => { ok: true } | { ok: false; reason: string }

const normalizeFingerprint = (fp: string): string => fp.replace(/:/g, '').toLowerCase()

// OpenSSL verify codes (X509_V_ERR_*) as Node reports them in authorizationError.
function tlsReason(code: string): AuthFailureReason {
  switch (code) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return 'self-signed-certificate'
    case 'CERT_HAS_EXPIRED':
      return 'certificate-expired'
    case 'CERT_NOT_YET_VALID':
      return 'certificate-not-yet-valid'
    case 'CERT_REVOKED':
      return 'certificate-revoked'
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'CERT_SIGNATURE_FAILURE':
      return 'untrusted-certificate'
    default:
      return 'certificate-invalid'
  }
}

// devices/registry.ts CertificateVerdict reasons
function registryReason(reason: string): AuthFailureReason {
  switch (reason) {
    case 'device-revoked':
      return 'device-revoked'
    case 'certificate-revoked':
      return 'certificate-revoked'
    case 'superseded':
      return 'certificate-superseded'
    case 'wrong-device':
      return 'certificate-invalid'
    default:
      return 'certificate-unknown'
  }
}

export interface RevokedSet {
  device(deviceId: string): boolean
  serial(serial: string): boolean
}

/** Identify the peer of a finished TLS handshake, or say why it is refused. */
export function identifyPeer(
  socket: TLSSocket,
  check: CertificateCheck,
  revoked: RevokedSet,
  now: Date,
): PeerIdentity | PeerRefusal {
  const ip = socket.remoteAddress ?? 'unknown'
  // read once per connection, only strings kept. getPeerX509Certificate() looks cheaper but cost
  // 2.5× as much CPU here (Node 20 builds a transferable object; bench/broker.ts profile)
  const cert = socket.getPeerCertificate()
  if (!cert || Object.keys(cert).length === 0) return { reason: 'no-certificate', ip, trusted: false }
  const fingerprint = normalizeFingerprint(cert.fingerprint256)
  const serial = normalizeSerial(cert.serialNumber)
  const cn = Array.isArray(cert.subject?.CN) ? undefined : cert.subject?.CN
  const claimed = { ip, fingerprint, serial, ...(cn !== undefined ? { deviceId: cn.slice(0, 80) } : {}) }
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'unknown')
    return { ...claimed, reason: tlsReason(code), detail: code, trusted: false }
  }
  if (!isDeviceId(cn)) return { ...claimed, reason: 'invalid-device-id', trusted: false }
  if (revoked.device(cn)) return { ...claimed, deviceId: cn, reason: 'device-revoked', trusted: true }
  if (revoked.serial(serial)) return { ...claimed, deviceId: cn, reason: 'certificate-revoked', trusted: true }
  const verdict = check(cn, serial, now)
  if (!verdict.ok)
    return { ...claimed, deviceId: cn, reason: registryReason(verdict.reason), detail: verdict.reason, trusted: true }
  return { deviceId: cn, serial, fingerprint, ip }
}

export const isRefusal = (p: PeerIdentity | PeerRefusal): p is PeerRefusal => 'reason' in p
