import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import type { Documents, DocumentTx, Projection } from '../../projections/projection.ts'
import type { AccountEvent, Role } from './events.ts'

// Accounts, their roles and their sessions, beside the queries that read them (STYLE §5).

export interface AccountDoc {
  accountId: string
  emailHash: string
  passwordHash: string
  roles: Role[]
}

export interface SessionDoc {
  sessionId: string
  accountId: string
  tokenHash: string
  expiresAt: string
  ended: boolean
}

const ACCOUNTS = 'api.accounts'
const BY_EMAIL = 'api.accountByEmail'
const SESSIONS = 'api.sessions'
const SESSION_IDS = 'api.sessionIds'

export const accountsProjection: Projection = {
  name: 'api-accounts',
  version: 1,
  eventTypes: ['AccountCreated', 'RoleGranted', 'SessionStarted', 'SessionEnded'],
  apply(tx: DocumentTx, recorded: RecordedEvent) {
    const event = { type: recorded.type, data: recorded.data } as AccountEvent
    switch (event.type) {
      case 'AccountCreated': {
        const { accountId, emailHash, passwordHash } = event.data
        if (tx.get(BY_EMAIL, emailHash) !== undefined) return
        tx.put(ACCOUNTS, accountId, { accountId, emailHash, passwordHash, roles: [] } satisfies AccountDoc)
        tx.put(BY_EMAIL, emailHash, accountId)
        return
      }
      case 'RoleGranted': {
        const a = tx.get<AccountDoc>(ACCOUNTS, event.data.accountId)
        if (a && !a.roles.includes(event.data.role)) tx.put(ACCOUNTS, a.accountId, { ...a, roles: [...a.roles, event.data.role] })
        return
      }
      case 'SessionStarted': {
        const { sessionId, accountId, tokenHash, expiresAt } = event.data
        tx.put(SESSIONS, tokenHash, { sessionId, accountId, tokenHash, expiresAt, ended: false } satisfies SessionDoc)
        tx.put(SESSION_IDS, sessionId, tokenHash)
        return
      }
      case 'SessionEnded': {
        const hash = tx.get<string>(SESSION_IDS, event.data.sessionId)
        const s = hash === undefined ? undefined : tx.get<SessionDoc>(SESSIONS, hash)
        if (s) tx.put(SESSIONS, s.tokenHash, { ...s, ended: true })
        return
      }
      case 'EmailReserved':
      case 'LoginFailed':
      case 'PrivilegedRouteUsed':
        return
      default: {
        const _: never = event
        return _
      }
    }
  },
}

export const accountById = (docs: Documents, accountId: string): AccountDoc | undefined => docs.get<AccountDoc>(ACCOUNTS, accountId)

export function accountByEmailHash(docs: Documents, emailHash: string): AccountDoc | undefined {
  const id = docs.get<string>(BY_EMAIL, emailHash)
  return id === undefined ? undefined : accountById(docs, id)
}

export const sessionByTokenHash = (docs: Documents, tokenHash: string): SessionDoc | undefined => docs.get<SessionDoc>(SESSIONS, tokenHash)

export function sessionById(docs: Documents, sessionId: string): SessionDoc | undefined {
  const hash = docs.get<string>(SESSION_IDS, sessionId)
  return hash === undefined ? undefined : sessionByTokenHash(docs, hash)
}
