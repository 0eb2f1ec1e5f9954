import type { EventStore, RecordedEvent } from '../infra/eventstore/port.ts'
import { MemoryDocuments, type DocumentTx, type Documents, type Projection } from '../projections/projection.ts'
import { deviceEventTypes, type DeviceEvent } from './events.ts'

// The devices read model: one document per device and one per certificate serial, so the
// broker and the API decide in O(1) whether a presented certificate is valid right now (R2, R3).

export interface DeviceView {
  deviceId: string
  status: 'active' | 'revoked'
  enrolledAt: string
  keyGeneratedByKennel: boolean
  /** the newest certificate */
  currentSerial: string | undefined
  /** every certificate ever issued to the device, oldest first */
  serials: string[]
  householdId: string | undefined
  claimedAt: string | undefined
  claimCodeExpiresAt: string
  revokedAt: string | undefined
  revokeReason: string | undefined
  revokedBy: string | undefined
  /** the broker's last DeviceConnected and DeviceDisconnected for it (any broker of a cluster) */
  lastConnectedAt: string | undefined
  lastDisconnectedAt: string | undefined
}

export interface CertificateView {
  serial: string
  deviceId: string
  caId: string
  notBefore: string
  notAfter: string
  fingerprint: string
  /** set by a renewal: from this time on the certificate is superseded */
  supersededAt: string | undefined
  revokedAt: string | undefined
  revokeReason: string | undefined
}

export type CertificateVerdict =
  | { ok: true; deviceId: string }
  | {
      ok: false
      reason:
        | 'unknown-device'
        | 'unknown-certificate'
        | 'device-revoked'
        | 'certificate-revoked'
        | 'superseded'
        | 'wrong-device'
    }

export const DEVICES = 'devices'
export const CERTIFICATES = 'certificates'

/** The one form of a serial used in events, metadata (`cert:<serial>`) and lookups: lowercase
 * hex, no colons or spaces, no leading zeros. Node's getPeerCertificate().serialNumber is
 * uppercase hex and may keep a leading 00. */
export function normalizeSerial(serial: string): string {
  const hex = serial.replace(/[:\s]/g, '').toLowerCase().replace(/^0+/, '')
  return hex === '' ? '0' : hex
}

export function deviceView(docs: Documents, deviceId: string): DeviceView | undefined {
  return docs.get<DeviceView>(DEVICES, deviceId)
}

export function certificateView(docs: Documents, serial: string): CertificateView | undefined {
  return docs.get<CertificateView>(CERTIFICATES, normalizeSerial(serial))
}

/** Is this certificate, presented by this device, acceptable now? Chain, signature and
 * validity dates are TLS's job; this answers what only the event history knows. */
export function checkCertificate(docs: Documents, deviceId: string, serial: string, now: Date): CertificateVerdict {
  const device = deviceView(docs, deviceId)
  if (!device) return { ok: false, reason: 'unknown-device' }
  const cert = certificateView(docs, serial)
  if (!cert) return { ok: false, reason: 'unknown-certificate' }
  if (cert.deviceId !== deviceId) return { ok: false, reason: 'wrong-device' }
  if (device.status === 'revoked') return { ok: false, reason: 'device-revoked' }
  if (cert.revokedAt !== undefined) return { ok: false, reason: 'certificate-revoked' }
  if (cert.supersededAt !== undefined && now.getTime() >= Date.parse(cert.supersededAt))
    return { ok: false, reason: 'superseded' }
  return { ok: true, deviceId }
}

/** Revoked certificates (by themselves or with their device), for the CRL. */
export function* revokedCertificates(docs: Documents): Iterable<CertificateView & { revokedAt: string }> {
  for (const cert of docs.values<CertificateView>(CERTIFICATES)) {
    if (cert.revokedAt !== undefined) yield cert as CertificateView & { revokedAt: string }
  }
}

/** the broker's connection events (docs/EVENTS.md), by name: the devices context knows no MQTT */
type ConnectionEvent = { type: 'DeviceConnected' | 'DeviceDisconnected'; data: { deviceId: string } }

export const devicesProjection: Projection = {
  name: 'devices',
  version: 3,
  eventTypes: [...deviceEventTypes, 'DeviceConnected', 'DeviceDisconnected'],
  apply(tx: DocumentTx, recorded: RecordedEvent): void {
    const event = { type: recorded.type, data: recorded.data } as DeviceEvent | ConnectionEvent
    const actor = typeof recorded.metadata.actor === 'string' ? recorded.metadata.actor : undefined
    switch (event.type) {
      case 'DeviceEnrolled': {
        const d = event.data
        const view: DeviceView = {
          deviceId: d.deviceId,
          status: 'active',
          enrolledAt: d.enrolledAt,
          keyGeneratedByKennel: d.keyGeneratedByKennel,
          currentSerial: undefined,
          serials: [],
          householdId: undefined,
          claimedAt: undefined,
          claimCodeExpiresAt: d.claimCodeExpiresAt,
          revokedAt: undefined,
          revokeReason: undefined,
          revokedBy: undefined,
          lastConnectedAt: undefined,
          lastDisconnectedAt: undefined,
        }
        tx.put(DEVICES, d.deviceId, view)
        return
      }
      case 'CertificateIssued': {
        const d = event.data
        updateDevice(tx, d.deviceId, (v) => ({
          ...v,
          currentSerial: d.serial,
          serials: v.serials.includes(d.serial) ? v.serials : [...v.serials, d.serial],
        }))
        const cert: CertificateView = {
          serial: d.serial,
          deviceId: d.deviceId,
          caId: d.caId,
          notBefore: d.notBefore,
          notAfter: d.notAfter,
          fingerprint: d.fingerprint,
          supersededAt: undefined,
          revokedAt: undefined,
          revokeReason: undefined,
        }
        tx.put(CERTIFICATES, d.serial, cert)
        return
      }
      case 'CertificateRenewed':
        updateCertificate(tx, event.data.previousSerial, (c) => ({ ...c, supersededAt: event.data.previousValidUntil }))
        return
      case 'CertificateRevoked':
        updateCertificate(tx, event.data.serial, (c) => ({
          ...c,
          revokedAt: c.revokedAt ?? event.data.revokedAt,
          revokeReason: c.revokeReason ?? event.data.reason,
        }))
        return
      case 'DeviceRevoked': {
        const d = event.data
        updateDevice(tx, d.deviceId, (v) => ({
          ...v,
          status: 'revoked',
          revokedAt: d.revokedAt,
          revokeReason: d.reason,
          revokedBy: actor,
        }))
        for (const serial of d.serials)
          updateCertificate(tx, serial, (c) => ({
            ...c,
            revokedAt: c.revokedAt ?? d.revokedAt,
            revokeReason: c.revokeReason ?? d.reason,
          }))
        return
      }
      case 'DeviceClaimed':
        updateDevice(tx, event.data.deviceId, (v) => ({
          ...v,
          householdId: event.data.householdId,
          claimedAt: event.data.claimedAt,
        }))
        return
      case 'DeviceUnpaired':
        updateDevice(tx, event.data.deviceId, (v) => ({ ...v, householdId: undefined, claimedAt: undefined }))
        return
      case 'DeviceConnected':
        updateDevice(tx, event.data.deviceId, (v) => ({ ...v, lastConnectedAt: recorded.time }))
        return
      case 'DeviceDisconnected':
        updateDevice(tx, event.data.deviceId, (v) => ({ ...v, lastDisconnectedAt: recorded.time }))
        return
      default: {
        const _: never = event
        return _
      }
    }
  },
}

function updateDevice(tx: DocumentTx, deviceId: string, change: (v: DeviceView) => DeviceView): void {
  const view = tx.get<DeviceView>(DEVICES, deviceId)
  if (view) tx.put(DEVICES, deviceId, change(view))
}

function updateCertificate(tx: DocumentTx, serial: string, change: (c: CertificateView) => CertificateView): void {
  const cert = tx.get<CertificateView>(CERTIFICATES, serial)
  if (cert) tx.put(CERTIFICATES, serial, change(cert))
}

/** Build the devices read model from the store in one pass (the CLI's way; servers follow it). */
export async function readRegistry(store: EventStore): Promise<MemoryDocuments> {
  const docs = new MemoryDocuments()
  for (const event of await store.readAll({
    filter: { types: devicesProjection.eventTypes, streamPrefixes: ['device-', 'mqtt-'] },
  }))
    devicesProjection.apply(docs, event)
  return docs
}
