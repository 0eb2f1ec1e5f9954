import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { checkCsr, newSerial, signDeviceCertificate } from './certificate.ts'
import { hashClaimSecret, newClaimCode } from './claim-code.ts'
import { generateKeyPair, privateKeyPem, sha256Hex } from './crypto-keys.ts'
import { assertCanEnroll, decide } from './device.ts'
import { assertDeviceId } from './device-id.ts'
import { handleDeviceCommand, loadDevice, nowOf, randomOf, recordCa, type DeviceDeps } from './device-store.ts'

// Enrolment (R1): from a CSR, the key staying on the toy (`device sign-csr`), or, for
// development and factories, with a key kennel generates and hands over once (`device enroll`).

export interface EnrolledDevice {
  deviceId: string
  keyPem: string
  certPem: string
  caPem: string
  claimCode: string
  serial: string
}

/** Enrol with a key generated here (ECDSA P-256). The caller must say so to the user (R1). */
export async function enrollDevice(deps: DeviceDeps, deviceId: string): Promise<EnrolledDevice> {
  assertDeviceId(deviceId)
  assertCanEnroll((await loadDevice(deps.store, deviceId)).state, deviceId)
  const keys = await generateKeyPair('P-256')
  const publicKey = await x509.PublicKey.create(keys.publicKey)
  const result = await enrol(deps, deviceId, publicKey, sha256Hex(publicKey.rawData), true)
  return {
    deviceId,
    keyPem: await privateKeyPem(keys.privateKey),
    certPem: result.certPem,
    caPem: result.caPem,
    claimCode: result.claimCode,
    serial: result.serial,
  }
}

/** Enrol a device from its CSR. Returns the claim code to print on the toy's card. */
export async function issueFromCsr(
  deps: DeviceDeps,
  deviceId: string,
  csrPem: string,
): Promise<{ certPem: string; serial: string; claimCode: string }> {
  assertDeviceId(deviceId)
  assertCanEnroll((await loadDevice(deps.store, deviceId)).state, deviceId)
  const csr = await checkCsr(csrPem, deviceId)
  return enrol(deps, deviceId, csr.publicKey, csr.publicKeyId, false)
}

async function enrol(
  deps: DeviceDeps,
  deviceId: string,
  publicKey: x509.PublicKey,
  publicKeyId: string,
  keyGeneratedByKennel: boolean,
) {
  const now = nowOf(deps)
  const random = randomOf(deps)
  const { code, secret } = newClaimCode(deviceId, random)
  const claimCodeHash = await hashClaimSecret(secret)
  // one CA for the whole enrolment, even when the server picks up a rollover meanwhile
  const { issuer, chainPem, origin, trustedPem } = deps.ca
  const { certPem, issued } = await signDeviceCertificate({
    issuer,
    chainPem,
    deviceId,
    publicKey,
    publicKeyId,
    serial: newSerial(random),
    now,
    validityDays: deps.config.certValidityDays,
  })
  const claimCodeExpiresAt = new Date(now.getTime() + deps.config.claimCodeTtlHours * 3_600_000)
  // decided on the stream as it is now: an enrolment of the same id meanwhile wins, this one is refused
  await handleDeviceCommand(deps, deviceId, async (state) => {
    const events = decide(
      {
        type: 'EnrollDevice',
        deviceId,
        now,
        keyGeneratedByKennel,
        claimCodeHash,
        claimCodeExpiresAt,
        certificate: issued,
      },
      state,
    )
    await recordCa(deps.store, { issuer, origin }, deps.actor)
    return events
  })
  return { certPem, serial: issued.serial, claimCode: code, caPem: trustedPem }
}
