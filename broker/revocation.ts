import type { CertificateRenewed, CertificateRevoked, DeviceRevoked } from '../devices/events.ts'
import type { EventStore, Subscription } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import type { RevokedSet } from './authenticate.ts'

// R3, R18: the broker follows revocations and renewals in the store. The revoked set refuses
// reconnects at once, even before the device registry's read model has caught up, and each
// revocation closes the live session through `onRevoked` (the broker kicks locally and tells the
// cluster). A renewal leaves the previous certificate valid until `previousValidUntil`; at that
// moment `onSuperseded` closes the sessions still using it (reconnects with it are already
// refused by the registry's checkCertificate).

export interface Revocation {
  deviceId: string
  /** absent when the whole device is revoked */
  serial?: string
  reason: string
}

export interface Supersession {
  deviceId: string
  /** the certificate the renewal replaced */
  serial: string
}

export interface CredentialHandlers {
  onRevoked(r: Revocation): void
  onSuperseded(s: Supersession): void
}

export interface RevocationFollower {
  readonly revoked: RevokedSet
  /** resolves once every revocation stored before start is known */
  readonly ready: Promise<void>
  stop(): Promise<void>
}

export const revocationEventTypes = ['CertificateRevoked', 'DeviceRevoked', 'CertificateRenewed'] as const

/** setTimeout's longest delay; a grace period can be up to 90 days */
const MAX_TIMER_MS = 2 ** 31 - 1

export function followRevocations(
  store: EventStore,
  log: Logger,
  handlers: CredentialHandlers,
  now: () => number = Date.now,
): RevocationFollower {
  const devices = new Set<string>()
  const serials = new Set<string>()
  // one timer per renewal whose grace period has not ended, keyed by the superseded serial
  const graceTimers = new Map<string, NodeJS.Timeout>()
  let live = false
  let sub: Subscription

  function superseded(s: Supersession, at: number): void {
    clearTimeout(graceTimers.get(s.serial))
    graceTimers.delete(s.serial)
    const wait = at - now()
    if (wait <= 0) {
      // sessions that existed before start were authenticated against the same history
      if (live) handlers.onSuperseded(s)
      return
    }
    const timer = setTimeout(() => superseded(s, at), Math.min(wait, MAX_TIMER_MS))
    timer.unref()
    graceTimers.set(s.serial, timer)
  }

  const ready = new Promise<void>((resolve, reject) => {
    sub = store.subscribe({
      filter: { types: revocationEventTypes },
      onEvent(event) {
        const e = event as unknown as CertificateRevoked | DeviceRevoked | CertificateRenewed
        if (e.type === 'CertificateRenewed')
          return superseded(
            { deviceId: e.data.deviceId, serial: e.data.previousSerial },
            Date.parse(e.data.previousValidUntil),
          )
        const revocation: Revocation =
          e.type === 'DeviceRevoked'
            ? { deviceId: e.data.deviceId, reason: e.data.reason }
            : { deviceId: e.data.deviceId, serial: e.data.serial, reason: e.data.reason }
        if (revocation.serial === undefined) devices.add(revocation.deviceId)
        else serials.add(revocation.serial)
        if (e.type === 'DeviceRevoked') for (const s of e.data.serials) serials.add(s)
        if (live) handlers.onRevoked(revocation)
      },
      onCaughtUp() {
        live = true
        resolve()
      },
      onRetry(err, delayMs) {
        log.warn({ err: err.message, delayMs }, 'revocation follower: reading the event store failed; retrying')
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
    async stop() {
      for (const timer of graceTimers.values()) clearTimeout(timer)
      graceTimers.clear()
      await sub.stop()
    },
  }
}
