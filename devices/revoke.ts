import { KennelError } from '../infra/errors.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Documents } from '../projections/projection.ts'
import { decide, evolve } from './device.ts'
import { assertDeviceId } from './device-id.ts'
import { handleDeviceCommand, nowOf, type ClaimDeps } from './device-store.ts'
import type { CertificateIssued } from './events.ts'
import { certificateView } from './registry.ts'
import { parseSerial } from './renew.ts'

// Revocation by event (R3): appending DeviceRevoked / CertificateRevoked is the whole act; the
// broker and API follow the stream and cut the device off. Works from the CLI while the server
// runs, because both append to the same store.

type RevokeDeps = Omit<ClaimDeps, 'ca' | 'config'>

export async function revokeDevice(deps: RevokeDeps, deviceId: string, reason: string): Promise<void> {
  assertDeviceId(deviceId)
  const why = checkReason(reason)
  await handleDeviceCommand(deps, deviceId, (state) => {
    if (state.status === 'new') throw new KennelError('KENNEL_ERR_DEVICE_UNKNOWN', `no device ${deviceId}`)
    return decide({ type: 'RevokeDevice', reason: why, now: nowOf(deps) }, state)
  })
}

/** The household the toy belonged to was erased with its last member (R12): the toy is revoked
 * with every certificate (the existing revocation, so the broker and the API cut it off) and
 * unpaired, in one append. A toy already revoked is only unpaired; one never enrolled is skipped. */
export async function retireDevice(deps: RevokeDeps, deviceId: string, reason: string): Promise<void> {
  assertDeviceId(deviceId)
  const why = checkReason(reason)
  await handleDeviceCommand(deps, deviceId, (state) => {
    if (state.status === 'new') return []
    const now = nowOf(deps)
    const revoked = state.status === 'revoked' ? [] : decide({ type: 'RevokeDevice', reason: why, now }, state)
    return [...revoked, ...decide({ type: 'UnpairDevice', reason: why, now }, revoked.reduce(evolve, state))]
  })
}

export async function revokeCertificate(deps: RevokeDeps, serial: string, reason: string): Promise<void> {
  const normalized = parseSerial(serial)
  const why = checkReason(reason)
  const deviceId = await deviceOfSerial(deps.store, deps.docs, normalized)
  if (deviceId === undefined)
    throw new KennelError('KENNEL_ERR_CERT_UNKNOWN', `no certificate with serial ${normalized} was issued`)
  await handleDeviceCommand(deps, deviceId, (state) =>
    decide({ type: 'RevokeCertificate', serial: normalized, reason: why, now: nowOf(deps) }, state),
  )
}

async function deviceOfSerial(
  store: EventStore,
  docs: Documents | undefined,
  serial: string,
): Promise<string | undefined> {
  if (docs) return certificateView(docs, serial)?.deviceId
  const issued = (await store.readAll({
    filter: { types: ['CertificateIssued'], streamPrefixes: ['device-'] },
  })) as unknown as { data: CertificateIssued['data'] }[]
  return issued.find((e) => e.data.serial === serial)?.data.deviceId
}

function checkReason(reason: unknown): string {
  const text = typeof reason === 'string' ? reason.trim() : ''
  if (text.length === 0 || text.length > 500 || /[\u0000-\u001f\u007f]/.test(text)) {
    throw new KennelError('KENNEL_ERR_VALIDATION', 'a revocation needs a reason: 1-500 printable characters')
  }
  return text
}
