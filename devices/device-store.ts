import { randomBytes } from 'node:crypto'
import type { Config } from '../infra/config.ts'
import { isKennelError } from '../infra/errors.ts'
import type { EventMetadata, EventStore } from '../infra/eventstore/port.ts'
import type { Documents } from '../projections/projection.ts'
import type { DeviceCa } from './ca.ts'
import { foldDevice, type DeviceState } from './device.ts'
import { caStream, deviceStream, type CaEvent, type DeviceEvent } from './events.ts'
import { sha256Hex } from './crypto-keys.ts'

// Load a device's stream, decide, append with the expected revision.

export interface DeviceDeps {
  store: EventStore
  ca: DeviceCa
  config: Pick<Config, 'certValidityDays' | 'renewalGraceHours' | 'claimCodeTtlHours'>
  /** recorded as the events' `actor` (docs/EVENTS.md): `cli:<user>`, `account:<id>`, `device:<id>` */
  actor: string
  now?: Date
  /** randomness for serials and claim codes; tests pass a deterministic one */
  random?: (n: number) => Buffer
  /** the credential the actor used (`cert:<serial>`, `token:<id>`), recorded as `credential` */
  credential?: string
  sourceIp?: string
  /** a person's action, or a paired toy's: the source address sealed with the person's or the
   * household's key, instead of sourceIp (R12, infra/keystore/sealed-source.ts) */
  sealedSource?: { sourceIpSealed: string; sourceIpTag: string; sourceIpOwner?: string }
  correlationId?: string
  /** the devices read model, when the caller keeps one: O(1) serial lookups */
  docs?: Documents
}

export type ClaimDeps = Omit<DeviceDeps, 'ca' | 'config'> & { ca?: DeviceCa; config?: DeviceDeps['config'] }

export interface LoadedDevice {
  state: DeviceState
  /** revision of the stream's last event, -1 when there is none */
  revision: number
}

export async function loadDevice(store: EventStore, deviceId: string): Promise<LoadedDevice> {
  const events = await store.readStream(deviceStream(deviceId))
  return { state: foldDevice(events.map((e) => ({ type: e.type, data: e.data }) as DeviceEvent)), revision: events.at(-1)?.revision ?? -1 }
}

export function metadataOf(deps: Omit<ClaimDeps, 'store'>): EventMetadata {
  const m: EventMetadata = { actor: deps.actor }
  if (deps.credential !== undefined) m.credential = deps.credential
  if (deps.sourceIp !== undefined) m.sourceIp = deps.sourceIp
  if (deps.sealedSource !== undefined) Object.assign(m, deps.sealedSource)
  if (deps.correlationId !== undefined) m.correlationId = deps.correlationId
  return m
}

export async function appendDeviceEvents(deps: ClaimDeps, deviceId: string, events: DeviceEvent[], revision: number): Promise<number> {
  const metadata = metadataOf(deps)
  const result = await deps.store.append(deviceStream(deviceId), events.map((e) => ({ type: e.type, data: e.data, metadata })), { expectedRevision: revision < 0 ? 'no_stream' : revision })
  return result.position
}

/** Run a decision, retrying on a concurrent append to the same stream (the retry re-decides
 * on the new state, so a second revocation becomes "already revoked"). */
export async function withRetry<T>(attempt: () => Promise<T>, times = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt()
    } catch (err) {
      if (i >= times || !isKennelError(err, 'KENNEL_ERR_WRONG_EXPECTED_REVISION')) throw err
    }
  }
}

export function nowOf(deps: { now?: Date }): Date {
  return deps.now ?? new Date()
}

export function randomOf(deps: { random?: (n: number) => Buffer }): (n: number) => Buffer {
  return deps.random ?? randomBytes
}

/** Record the issuing CA once in `ca-{caId}` before its first certificate is recorded. */
export async function recordCa(store: EventStore, ca: Pick<DeviceCa, 'issuer' | 'origin'>, actor: string): Promise<void> {
  const { info } = ca.issuer
  const event: CaEvent = ca.origin === 'created' ? { type: 'CaCreated', data: info } : { type: 'CaAdded', data: info }
  const h = sha256Hex(Buffer.from(`${caStream(info.caId)}:${event.type}`))
  const id = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`
  try {
    await store.append(caStream(info.caId), [{ id, type: event.type, data: event.data, metadata: { actor } }], { expectedRevision: 'no_stream' })
  } catch (err) {
    if (!isKennelError(err, 'KENNEL_ERR_WRONG_EXPECTED_REVISION')) throw err
  }
}
