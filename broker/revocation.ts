import type { CertificateRevoked, DeviceRevoked } from '../devices/events.ts'
import type { EventStore, Subscription } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import type { RevokedSet } from './authenticate.ts'

// R3: the broker follows revocation events from the store. The revoked set refuses reconnects
// at once, even before the device registry's read model has caught up, and each revocation
// closes the live session through `onRevoked` (the broker kicks locally and tells the cluster).

export interface Revocation {
  deviceId: string
  /** absent when the whole device is revoked */
  serial?: string
  reason: string
}

export interface RevocationFollower {
  readonly revoked: RevokedSet
  /** resolves once every revocation stored before start is known */
  readonly ready: Promise<void>
  stop(): Promise<void>
}

export const revocationEventTypes = ['CertificateRevoked', 'DeviceRevoked'] as const

export function followRevocations(store: EventStore, log: Logger, onRevoked: (r: Revocation) => void): RevocationFollower {
  const devices = new Set<string>()
  const serials = new Set<string>()
  let live = false
  let sub: Subscription
  const ready = new Promise<void>((resolve, reject) => {
    sub = store.subscribe({
      filter: { types: revocationEventTypes },
      onEvent(event) {
        const e = event as unknown as CertificateRevoked | DeviceRevoked
        const revocation: Revocation =
          e.type === 'DeviceRevoked'
            ? { deviceId: e.data.deviceId, reason: e.data.reason }
            : { deviceId: e.data.deviceId, serial: e.data.serial, reason: e.data.reason }
        if (revocation.serial === undefined) devices.add(revocation.deviceId)
        else serials.add(revocation.serial)
        if (e.type === 'DeviceRevoked') for (const s of e.data.serials) serials.add(s)
        // sessions that existed before start were authenticated against the same history
        if (live) onRevoked(revocation)
      },
      onCaughtUp() {
        live = true
        resolve()
      },
      onError(err) {
        log.error({ err }, 'revocation follower stopped')
        reject(err)
      },
    })
  })
  return {
    revoked: { device: (id) => devices.has(id), serial: (s) => serials.has(s) },
    ready,
    stop: () => sub.stop(),
  }
}
