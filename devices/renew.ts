import { KennelError } from '../infra/errors.ts'
import { checkCsr, newSerial, signDeviceCertificate } from './certificate.ts'
import { assertCanRenew, decide } from './device.ts'
import { assertDeviceId } from './device-id.ts'
import { handleDeviceCommand, loadDevice, nowOf, randomOf, recordCa, type DeviceDeps } from './device-store.ts'
import { normalizeSerial } from './registry.ts'

// Renewal (R18): a device holding its current, valid certificate gets a new one for a new CSR
// without downtime; the old one stays valid for KENNEL_RENEWAL_GRACE_HOURS, then is superseded.
// The transport (the API's device route) has already checked the presented certificate's chain.
// The toy gets the CA's trust bundle with its certificate and keeps it as its ca.crt: after any
// number of rollovers it still holds the CA of the server certificate.
export async function renewCertificate(
  deps: DeviceDeps,
  deviceId: string,
  presentedSerial: string,
  csrPem: string,
): Promise<{ certPem: string; serial: string; caPem: string }> {
  assertDeviceId(deviceId)
  const presented = parseSerial(presentedSerial)
  const now = nowOf(deps)
  const before = await loadDevice(deps.store, deviceId)
  assertCanRenew(before.state, presented, now)
  const csr = await checkCsr(csrPem, deviceId)
  // one CA for the whole renewal, even when the server picks up a rollover meanwhile
  const { issuer, chainPem, origin, trustedPem } = deps.ca
  const { certPem, issued } = await signDeviceCertificate({
    issuer,
    chainPem,
    deviceId,
    publicKey: csr.publicKey,
    publicKeyId: csr.publicKeyId,
    serial: newSerial(randomOf(deps)),
    now,
    validityDays: deps.config.certValidityDays,
  })
  // decided on the stream as it is now: a concurrent renewal or revocation wins and this one is refused
  await handleDeviceCommand(
    { ...deps, credential: deps.credential ?? `cert:${presented}` },
    deviceId,
    async (state) => {
      const events = decide(
        {
          type: 'RenewCertificate',
          presentedSerial: presented,
          now,
          graceHours: deps.config.renewalGraceHours,
          certificate: issued,
        },
        state,
      )
      await recordCa(deps.store, { issuer, origin }, deps.actor)
      return events
    },
  )
  return { certPem, serial: issued.serial, caPem: trustedPem }
}

export function parseSerial(serial: unknown): string {
  const normalized = typeof serial === 'string' ? normalizeSerial(serial) : ''
  if (!/^[0-9a-f]{1,40}$/.test(normalized))
    throw new KennelError(
      'KENNEL_ERR_VALIDATION',
      `invalid certificate serial ${JSON.stringify(String(serial).slice(0, 80))}: hexadecimal, at most 20 bytes`,
    )
  return normalized
}
