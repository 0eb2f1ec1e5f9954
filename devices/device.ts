import { KennelError } from '../infra/errors.ts'
import type { Decider } from '../infra/eventstore/command.ts'
import type { ClaimCodeRejectedReason, DeviceEvent } from './events.ts'

// The device aggregate (stream `device-{deviceId}`): pure decide/evolve. Time,
// certificates and the result of checking a claim code's secret come in with the command, so
// every decision is deterministic and tested as given/when/then (test/devices/device.test.ts).

export interface CertificateState {
  status: 'active' | 'revoked'
  notAfter: string
  publicKeyId: string
  supersededAt: string | undefined
}

export interface DeviceState {
  status: 'new' | 'active' | 'revoked'
  deviceId: string | undefined
  claimCodeHash: string | undefined
  claimCodeExpiresAt: string | undefined
  householdId: string | undefined
  currentSerial: string | undefined
  certificates: Readonly<Record<string, CertificateState>>
}

export const initialDeviceState: DeviceState = {
  status: 'new',
  deviceId: undefined,
  claimCodeHash: undefined,
  claimCodeExpiresAt: undefined,
  householdId: undefined,
  currentSerial: undefined,
  certificates: {},
}

/** A certificate already signed for the command; it reaches nobody unless decide accepts it. */
export interface IssuedCertificate {
  serial: string
  caId: string
  notBefore: string
  notAfter: string
  fingerprint: string
  publicKeyId: string
}

export type DeviceCommand =
  | {
      type: 'EnrollDevice'
      deviceId: string
      now: Date
      keyGeneratedByKennel: boolean
      claimCodeHash: string
      claimCodeExpiresAt: Date
      certificate: IssuedCertificate
    }
  | { type: 'RenewCertificate'; presentedSerial: string; now: Date; graceHours: number; certificate: IssuedCertificate }
  | { type: 'RevokeCertificate'; serial: string; reason: string; now: Date }
  | { type: 'RevokeDevice'; reason: string; now: Date }
  | { type: 'UnpairDevice'; reason: string; now: Date }
  | { type: 'ClaimDevice'; householdId: string; secretMatches: boolean; now: Date }

/** Thrown by decide when a claim is refused; the handler records it as ClaimCodeRejected. */
export class ClaimRefused extends KennelError {
  readonly reason: ClaimCodeRejectedReason
  constructor(reason: ClaimCodeRejectedReason) {
    super(...claimRefusal(reason))
    this.reason = reason
  }
}

function claimRefusal(reason: ClaimCodeRejectedReason): [ConstructorParameters<typeof KennelError>[0], string] {
  switch (reason) {
    case 'expired':
      return ['KENNEL_ERR_CLAIM_CODE_EXPIRED', 'this claim code has expired; ask support for a new one']
    case 'used':
      return ['KENNEL_ERR_CLAIM_CODE_USED', 'this claim code has already been used']
    case 'device-revoked':
      return ['KENNEL_ERR_DEVICE_REVOKED', 'this toy has been revoked and cannot be paired']
    case 'malformed':
    case 'unknown-device':
    case 'wrong-secret':
      return ['KENNEL_ERR_CLAIM_CODE_INVALID', 'this claim code is not valid']
    default: {
      const _: never = reason
      return _
    }
  }
}

/** What enrolling would refuse, checked before the costly work (hashing, signing) is done. */
export function assertCanEnroll(state: DeviceState, deviceId: string): void {
  if (state.status === 'revoked')
    throw new KennelError(
      'KENNEL_ERR_DEVICE_REVOKED',
      `device ${deviceId} is revoked; a revoked id cannot be enrolled again`,
    )
  if (state.status === 'active')
    throw new KennelError('KENNEL_ERR_DEVICE_EXISTS', `device ${deviceId} is already enrolled`)
}

export function assertCanRenew(state: DeviceState, presentedSerial: string, now: Date, newPublicKeyId?: string): void {
  const id = state.deviceId ?? 'device'
  if (state.status === 'new') throw new KennelError('KENNEL_ERR_DEVICE_UNKNOWN', 'unknown device')
  if (state.status === 'revoked') throw new KennelError('KENNEL_ERR_DEVICE_REVOKED', `device ${id} is revoked`)
  const presented = state.certificates[presentedSerial]
  if (!presented)
    throw new KennelError('KENNEL_ERR_CERT_UNKNOWN', `certificate ${presentedSerial} was not issued to ${id}`)
  if (presented.status === 'revoked')
    throw new KennelError('KENNEL_ERR_CERT_REVOKED', `certificate ${presentedSerial} is revoked`)
  if (presentedSerial !== state.currentSerial)
    throw new KennelError(
      'KENNEL_ERR_CERT_INVALID',
      `certificate ${presentedSerial} has been superseded; renew with the current certificate`,
    )
  if (Date.parse(presented.notAfter) <= now.getTime())
    throw new KennelError(
      'KENNEL_ERR_CERT_INVALID',
      `certificate ${presentedSerial} has expired; the device must be enrolled again`,
    )
  if (
    newPublicKeyId !== undefined &&
    Object.values(state.certificates).some((c) => c.status === 'revoked' && c.publicKeyId === newPublicKeyId)
  ) {
    throw new KennelError(
      'KENNEL_ERR_CERT_REVOKED',
      'the CSR reuses the key of a revoked certificate; generate a new key',
    )
  }
}

export function decide(command: DeviceCommand, state: DeviceState): DeviceEvent[] {
  switch (command.type) {
    case 'EnrollDevice': {
      assertCanEnroll(state, command.deviceId)
      const c = command.certificate
      return [
        {
          type: 'DeviceEnrolled',
          data: {
            deviceId: command.deviceId,
            enrolledAt: command.now.toISOString(),
            keyGeneratedByKennel: command.keyGeneratedByKennel,
            claimCodeHash: command.claimCodeHash,
            claimCodeExpiresAt: command.claimCodeExpiresAt.toISOString(),
          },
        },
        { type: 'CertificateIssued', data: { deviceId: command.deviceId, ...c } },
      ]
    }
    case 'RenewCertificate': {
      assertCanRenew(state, command.presentedSerial, command.now, command.certificate.publicKeyId)
      const deviceId = state.deviceId!
      const previousValidUntil = new Date(command.now.getTime() + command.graceHours * 3_600_000)
      return [
        { type: 'CertificateIssued', data: { deviceId, ...command.certificate } },
        {
          type: 'CertificateRenewed',
          data: {
            deviceId,
            serial: command.certificate.serial,
            previousSerial: command.presentedSerial,
            renewedAt: command.now.toISOString(),
            previousValidUntil: previousValidUntil.toISOString(),
          },
        },
      ]
    }
    case 'RevokeCertificate': {
      if (state.status === 'new')
        throw new KennelError('KENNEL_ERR_CERT_UNKNOWN', `unknown certificate ${command.serial}`)
      const cert = state.certificates[command.serial]
      if (!cert)
        throw new KennelError(
          'KENNEL_ERR_CERT_UNKNOWN',
          `certificate ${command.serial} was not issued to ${state.deviceId}`,
        )
      if (cert.status === 'revoked')
        throw new KennelError('KENNEL_ERR_CERT_REVOKED', `certificate ${command.serial} is already revoked`)
      return [
        {
          type: 'CertificateRevoked',
          data: {
            deviceId: state.deviceId!,
            serial: command.serial,
            reason: command.reason,
            revokedAt: command.now.toISOString(),
          },
        },
      ]
    }
    case 'RevokeDevice': {
      if (state.status === 'new') throw new KennelError('KENNEL_ERR_DEVICE_UNKNOWN', 'unknown device')
      if (state.status === 'revoked')
        throw new KennelError('KENNEL_ERR_DEVICE_REVOKED', `device ${state.deviceId} is already revoked`)
      const serials = Object.entries(state.certificates)
        .filter(([, c]) => c.status !== 'revoked')
        .map(([s]) => s)
      return [
        {
          type: 'DeviceRevoked',
          data: { deviceId: state.deviceId!, reason: command.reason, revokedAt: command.now.toISOString(), serials },
        },
      ]
    }
    case 'UnpairDevice': {
      if (state.status === 'new') throw new KennelError('KENNEL_ERR_DEVICE_UNKNOWN', 'unknown device')
      if (state.householdId === undefined) return []
      return [
        {
          type: 'DeviceUnpaired',
          data: {
            deviceId: state.deviceId!,
            householdId: state.householdId,
            reason: command.reason,
            unpairedAt: command.now.toISOString(),
          },
        },
      ]
    }
    case 'ClaimDevice': {
      if (state.status === 'new') throw new ClaimRefused('unknown-device')
      if (!command.secretMatches) throw new ClaimRefused('wrong-secret')
      if (state.status === 'revoked') throw new ClaimRefused('device-revoked')
      if (state.householdId !== undefined) throw new ClaimRefused('used')
      if (Date.parse(state.claimCodeExpiresAt!) <= command.now.getTime()) throw new ClaimRefused('expired')
      return [
        {
          type: 'DeviceClaimed',
          data: { deviceId: state.deviceId!, householdId: command.householdId, claimedAt: command.now.toISOString() },
        },
      ]
    }
    default: {
      const _: never = command
      return _
    }
  }
}

export function evolve(state: DeviceState, event: DeviceEvent): DeviceState {
  switch (event.type) {
    case 'DeviceEnrolled':
      return {
        ...state,
        status: 'active',
        deviceId: event.data.deviceId,
        claimCodeHash: event.data.claimCodeHash,
        claimCodeExpiresAt: event.data.claimCodeExpiresAt,
      }
    case 'CertificateIssued': {
      const d = event.data
      return {
        ...state,
        currentSerial: d.serial,
        certificates: {
          ...state.certificates,
          [d.serial]: { status: 'active', notAfter: d.notAfter, publicKeyId: d.publicKeyId, supersededAt: undefined },
        },
      }
    }
    case 'CertificateRenewed':
      return withCertificate(state, event.data.previousSerial, (c) => ({
        ...c,
        supersededAt: event.data.previousValidUntil,
      }))
    case 'CertificateRevoked':
      return withCertificate(state, event.data.serial, (c) => ({ ...c, status: 'revoked' }))
    case 'DeviceRevoked': {
      let next: DeviceState = { ...state, status: 'revoked' }
      for (const serial of event.data.serials)
        next = withCertificate(next, serial, (c) => ({ ...c, status: 'revoked' }))
      return next
    }
    case 'DeviceClaimed':
      return { ...state, householdId: event.data.householdId }
    case 'DeviceUnpaired':
      return { ...state, householdId: undefined }
    default: {
      const _: never = event
      return _
    }
  }
}

function withCertificate(
  state: DeviceState,
  serial: string,
  change: (c: CertificateState) => CertificateState,
): DeviceState {
  const cert = state.certificates[serial]
  return cert ? { ...state, certificates: { ...state.certificates, [serial]: change(cert) } } : state
}

export function foldDevice(events: readonly DeviceEvent[]): DeviceState {
  return events.reduce(evolve, initialDeviceState)
}

export const deviceDecider: Decider<DeviceCommand, DeviceState, DeviceEvent> = {
  initialState: initialDeviceState,
  evolve,
  decide,
}
