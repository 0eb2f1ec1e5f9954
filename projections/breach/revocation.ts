import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import type { AuditKey, AuditLog } from '../audit/log.ts'
import type { Credential } from './credential.ts'

// When the credential was cut off (R3, R16). A presigned URL stays valid until it expires, so a
// URL the credential obtained can still be used after the credential was revoked: by the thief
// who holds it. The report flags every such use.

export interface Revocation {
  type: 'DeviceRevoked' | 'CertificateRevoked' | 'SessionEnded'
  id: string
  position: number
  time: string
}

const field = (e: RecordedEvent, name: string): unknown => ((e.data ?? {}) as Record<string, unknown>)[name]

const earliest = (events: readonly RecordedEvent[]): Revocation | undefined => {
  const e = [...events].sort((a, b) => a.position - b.position)[0]
  return e && { type: e.type as Revocation['type'], id: e.id, position: e.position, time: e.time }
}

/** the first event that revoked the credential, if any: `DeviceRevoked` for a device;
 * `CertificateRevoked` of the serial, or `DeviceRevoked` of its device after it was issued, for a
 * certificate; the `SessionEnded` of the session for a token. Nothing revokes an account's
 * password yet. */
export async function revocationOf(log: AuditLog, c: Credential): Promise<Revocation | undefined> {
  switch (c.kind) {
    case 'device':
      return earliest(await log.events([`device:${c.value}`], {}, ['DeviceRevoked']))
    case 'cert': {
      const named = await log.events([`serial:${c.value}`], {}, ['CertificateIssued', 'CertificateRevoked'])
      const revocations = named.filter((e) => e.type === 'CertificateRevoked' && field(e, 'serial') === c.value)
      for (const issued of named.filter(
        (e) => e.type === 'CertificateIssued' && typeof field(e, 'deviceId') === 'string',
      )) {
        // revoking a device revokes every certificate it holds
        const devices = await log.events([`device:${field(issued, 'deviceId') as string}`], {}, ['DeviceRevoked'])
        revocations.push(...devices.filter((e) => e.position > issued.position))
      }
      return earliest(revocations)
    }
    case 'token': {
      // a logout is appended with the session's own token, an ending by someone else names the
      // account: look under both
      const own = await log.events([`credential:token:${c.value}`])
      const accounts = new Set(
        own.map((e) => e.metadata.actor).filter((a): a is string => typeof a === 'string' && a.startsWith('account:')),
      )
      const keys: AuditKey[] = [
        `credential:token:${c.value}`,
        ...[...accounts].map((a): AuditKey => `account:${a.slice('account:'.length)}`),
      ]
      return earliest((await log.events(keys, {}, ['SessionEnded'])).filter((e) => field(e, 'sessionId') === c.value))
    }
    case 'account':
      return undefined
    default: {
      const _: never = c.kind
      return _
    }
  }
}
