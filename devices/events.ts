// Every event of the device-identity context (docs/EVENTS.md): the `device-{deviceId}` aggregate,
// the `ca-{caId}` lifecycle and claim-code refusals in `security-{yyyy-mm-dd}`. Serials are
// lowercase hex without colons or leading zeros (registry.ts normalizeSerial); times are ISO 8601.

export interface DeviceEnrolled {
  type: 'DeviceEnrolled'
  data: {
    deviceId: string
    enrolledAt: string
    /** true when kennel generated the device key (`device enroll`), false for a CSR (R1) */
    keyGeneratedByKennel: boolean
    /** argon2id hash of the claim code's secret; the code itself is never stored */
    claimCodeHash: string
    claimCodeExpiresAt: string
  }
}

export interface CertificateIssued {
  type: 'CertificateIssued'
  data: {
    deviceId: string
    serial: string
    caId: string
    notBefore: string
    notAfter: string
    /** SHA-256 of the certificate DER, lowercase hex */
    fingerprint: string
    /** SHA-256 of the subject public key info DER, lowercase hex */
    publicKeyId: string
  }
}

export interface CertificateRenewed {
  type: 'CertificateRenewed'
  data: {
    deviceId: string
    /** the new certificate (issued by the CertificateIssued appended with this event) */
    serial: string
    previousSerial: string
    renewedAt: string
    /** the previous certificate is superseded from this time on */
    previousValidUntil: string
  }
}

export interface CertificateRevoked {
  type: 'CertificateRevoked'
  data: { deviceId: string; serial: string; reason: string; revokedAt: string }
}

export interface DeviceRevoked {
  type: 'DeviceRevoked'
  data: {
    deviceId: string
    reason: string
    revokedAt: string
    /** every certificate of the device that was not revoked yet; all are revoked with it */
    serials: string[]
  }
}

export interface DeviceClaimed {
  type: 'DeviceClaimed'
  data: { deviceId: string; householdId: string; claimedAt: string }
}

/** the toy no longer belongs to the household: the household was erased with its last member
 * (R12); the toy is revoked in the same append, so it cannot be claimed again */
export interface DeviceUnpaired {
  type: 'DeviceUnpaired'
  data: { deviceId: string; householdId: string; reason: string; unpairedAt: string }
}

export type ClaimCodeRejectedReason =
  | 'malformed'
  | 'unknown-device'
  | 'wrong-secret'
  | 'expired'
  | 'used'
  | 'device-revoked'

export interface ClaimCodeRejected {
  type: 'ClaimCodeRejected'
  data: {
    /** absent when the code was too malformed to name a device */
    deviceId?: string
    householdId: string
    reason: ClaimCodeRejectedReason
    rejectedAt: string
  }
}

export type CaKeyAlgorithm = 'P-256' | 'P-384' | 'RSA-3072' | 'other'

export interface CaInfo {
  caId: string
  subject: string
  keyAlgorithm: CaKeyAlgorithm
  notBefore: string
  notAfter: string
  development: boolean
  /** the issuing CA is an intermediate under a root (the development root, or the offline root of KENNEL_CA_CERT) */
  intermediate: boolean
}

/** kennel generated the CA key (development CA, `ca rollover` in development) */
export interface CaCreated {
  type: 'CaCreated'
  data: CaInfo
}

/** a CA whose key kennel did not generate (production files) was first used */
export interface CaAdded {
  type: 'CaAdded'
  data: CaInfo
}

export type DeviceEvent =
  | DeviceEnrolled
  | CertificateIssued
  | CertificateRenewed
  | CertificateRevoked
  | DeviceRevoked
  | DeviceClaimed
  | DeviceUnpaired
export type CaEvent = CaCreated | CaAdded
export type DevicesContextEvent = DeviceEvent | CaEvent | ClaimCodeRejected

export const deviceEventTypes = [
  'DeviceEnrolled',
  'CertificateIssued',
  'CertificateRenewed',
  'CertificateRevoked',
  'DeviceRevoked',
  'DeviceClaimed',
  'DeviceUnpaired',
] as const satisfies readonly DeviceEvent['type'][]

export const deviceStream = (deviceId: string): string => `device-${deviceId}`
export const caStream = (caId: string): string => `ca-${caId}`
