import { randomBytes } from 'node:crypto'
import type { Config } from '../infra/config.ts'
import { isKennelError } from '../infra/errors.ts'
import { handleCommand, loadStream, type Handled, type LoadedStream } from '../infra/eventstore/command.ts'
import type { EventMetadata, EventStore } from '../infra/eventstore/port.ts'
import type { Documents } from '../projections/projection.ts'
import type { DeviceCa } from './ca.ts'
import { deviceDecider, type DeviceState } from './device.ts'
import { caStream, deviceStream, type CaEvent, type DeviceEvent } from './events.ts'
import { sha256Hex } from './crypto-keys.ts'

// A device's commands go through the one command handler (infra/eventstore/command.ts) on its
// stream `device-{deviceId}`, with the metadata of whoever acts.

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

export function loadDevice(store: EventStore, deviceId: string): Promise<LoadedStream<DeviceState>> {
  return loadStream(store, deviceStream(deviceId), deviceDecider)
}

export function metadataOf(deps: Omit<ClaimDeps, 'store'>): EventMetadata {
  const m: EventMetadata = { actor: deps.actor }
  if (deps.credential !== undefined) m.credential = deps.credential
  if (deps.sourceIp !== undefined) m.sourceIp = deps.sourceIp
  if (deps.sealedSource !== undefined) Object.assign(m, deps.sealedSource)
  if (deps.correlationId !== undefined) m.correlationId = deps.correlationId
  return m
}

/** Decide on the device's stream and append with its revision; a concurrent append to the
 * stream makes `handle` run again on the new state (a second revocation becomes "already
 * revoked"). */
export function handleDeviceCommand(
  deps: ClaimDeps,
  deviceId: string,
  handle: (state: DeviceState) => DeviceEvent[] | Promise<DeviceEvent[]>,
): Promise<Handled<DeviceState, DeviceEvent>> {
  return handleCommand(deps.store, deviceStream(deviceId), deviceDecider, handle, { metadata: metadataOf(deps) })
}

export function nowOf(deps: { now?: Date }): Date {
  return deps.now ?? new Date()
}

export function randomOf(deps: { random?: (n: number) => Buffer }): (n: number) => Buffer {
  return deps.random ?? randomBytes
}

/** Record the issuing CA once in `ca-{caId}` before its first certificate is recorded. */
export async function recordCa(
  store: EventStore,
  ca: Pick<DeviceCa, 'issuer' | 'origin'>,
  actor: string,
): Promise<void> {
  const { info } = ca.issuer
  const event: CaEvent = ca.origin === 'created' ? { type: 'CaCreated', data: info } : { type: 'CaAdded', data: info }
  const h = sha256Hex(Buffer.from(`${caStream(info.caId)}:${event.type}`))
  const id = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`
  try {
    await store.append(caStream(info.caId), [{ id, type: event.type, data: event.data, metadata: { actor } }], {
      expectedRevision: 'no_stream',
    })
  } catch (err) {
    if (!isKennelError(err, 'KENNEL_ERR_WRONG_EXPECTED_REVISION')) throw err
  }
}
