import { KennelError } from '../../infra/errors.ts'
import type { AuditKey } from '../audit/log.ts'

// The credential a breach report is about (R16), and the audit keys its actions are indexed under
// (metadata.actor or metadata.credential, docs/EVENTS.md).

export type CredentialKind = 'device' | 'cert' | 'account' | 'token'

export interface Credential {
  kind: CredentialKind
  value: string
}

const VALUE = /^[A-Za-z0-9._:@-]{1,200}$/

export function parseCredential(raw: string): Credential {
  const i = raw.indexOf(':')
  const kind = raw.slice(0, i) as CredentialKind
  let value = raw.slice(i + 1)
  if (i < 0 || !['device', 'cert', 'account', 'token'].includes(kind)) {
    throw new KennelError(
      'KENNEL_ERR_CREDENTIAL_INVALID',
      `credential must be device:<id>, cert:<serial>, account:<id> or token:<id> (got ${JSON.stringify(raw)})`,
    )
  }
  if (kind === 'cert') value = value.replace(/:/g, '').toLowerCase()
  if (!VALUE.test(value) || (kind === 'cert' && !/^[0-9a-f]+$/.test(value))) {
    throw new KennelError(
      'KENNEL_ERR_CREDENTIAL_INVALID',
      `invalid ${kind} credential value ${JSON.stringify(raw.slice(i + 1))}`,
    )
  }
  return { kind, value }
}

/** the audit keys under which the credential's own actions are indexed */
export function credentialKeys(c: Credential): AuditKey[] {
  switch (c.kind) {
    case 'device':
      return [`actor:device:${c.value}`, `credential:device:${c.value}`]
    case 'cert':
      return [`credential:cert:${c.value}`]
    case 'account':
      return [`actor:account:${c.value}`, `credential:password:${c.value}`, `credential:account:${c.value}`]
    case 'token':
      return [`credential:token:${c.value}`]
    default: {
      const _: never = c.kind
      return _
    }
  }
}

/** every audit key under which the credential appears at all: as actor or credential, or named
 * in an event's data (a device's enrolment, a certificate's issue, an account's creation) */
export function knownKeys(c: Credential): AuditKey[] {
  const own = credentialKeys(c)
  if (c.kind === 'device') return [...own, `device:${c.value}`]
  if (c.kind === 'cert') return [...own, `serial:${c.value}`]
  if (c.kind === 'account') return [...own, `account:${c.value}`]
  return own
}
