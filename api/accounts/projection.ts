import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import type { Documents, DocumentTx, Projection } from '../../projections/projection.ts'
import type { AccountEvent, Role } from './events.ts'
import type { LoginLifts } from './login-limiter.ts'

// Accounts, their roles and their sessions, beside the queries that read them.

export interface AccountDoc {
  accountId: string
  emailHash: string
  passwordHash: string
  roles: Role[]
  /** the address was confirmed (or the account predates confirmation); logins need it */
  verified: boolean
  /** the newest confirmation mail's token while unverified: the only one that confirms */
  pending?: PendingVerification
}

export interface PendingVerification {
  verificationId: string
  tokenHash: string
  /** the password chosen with that sign-up, the account's once confirmed */
  passwordHash: string
  expiresAt: string
}

/** every confirmation token ever mailed, by its hash: which account it names */
export interface VerificationDoc {
  accountId: string
  verificationId: string
}

/** an erasure under way: what it set out to erase, who started it and when (nothing personal) */
export interface ErasureStartedDoc {
  accountId: string
  startedAt: string
  reason: string
  householdIds: string[]
  deviceIds: string[]
  recordingIds: string[]
  actor: string
  position: number
}

export interface ErasedAccountDoc {
  accountId: string
  erasedAt: string
}

export interface SessionDoc {
  sessionId: string
  accountId: string
  tokenHash: string
  expiresAt: string
  /** when the login was recorded (absent for sessions read from an older read model) */
  startedAt?: string
  ended: boolean
}

const ACCOUNTS = 'api.accounts'
const BY_EMAIL = 'api.accountByEmail'
const SESSIONS = 'api.sessions'
const SESSION_IDS = 'api.sessionIds'
const VERIFICATIONS = 'api.verifications'
/** erased accounts: accountId → ErasedAccountDoc (nothing personal) */
const ERASED_ACCOUNTS = 'api.erasedAccounts'
/** erasures started and not finished: accountId → ErasureStartedDoc (AccountErased removes it) */
const ERASURES_STARTED = 'api.erasuresStarted'
/** LoginBlockLifted counts: `account:{accountId}`, `account-ip:{accountId}:{ip}`, `ip:{ip}` */
const LOGIN_LIFTS = 'api.loginLifts'

export const accountsProjection: Projection = {
  name: 'api-accounts',
  version: 5,
  eventTypes: [
    'AccountCreated',
    'VerificationRequested',
    'AccountVerified',
    'RoleGranted',
    'SessionStarted',
    'SessionEnded',
    'LoginBlockLifted',
    'AccountErasureStarted',
    'AccountErased',
  ],
  apply(tx: DocumentTx, recorded: RecordedEvent) {
    const event = { type: recorded.type, data: recorded.data } as AccountEvent
    switch (event.type) {
      case 'AccountCreated': {
        const { accountId, emailHash, passwordHash, verificationRequired } = event.data
        if (tx.get(BY_EMAIL, emailHash) !== undefined) return
        tx.put(ACCOUNTS, accountId, {
          accountId,
          emailHash,
          passwordHash,
          roles: [],
          verified: verificationRequired !== true,
        } satisfies AccountDoc)
        tx.put(BY_EMAIL, emailHash, accountId)
        return
      }
      case 'VerificationRequested': {
        const { accountId, verificationId, tokenHash, passwordHash, expiresAt } = event.data
        const a = tx.get<AccountDoc>(ACCOUNTS, accountId)
        if (!a || a.verified) return
        tx.put(ACCOUNTS, accountId, { ...a, pending: { verificationId, tokenHash, passwordHash, expiresAt } })
        tx.put(VERIFICATIONS, tokenHash, { accountId, verificationId } satisfies VerificationDoc)
        return
      }
      case 'AccountVerified': {
        const a = tx.get<AccountDoc>(ACCOUNTS, event.data.accountId)
        if (!a || a.verified || a.pending?.verificationId !== event.data.verificationId) return
        const { pending: _, ...rest } = a
        tx.put(ACCOUNTS, a.accountId, { ...rest, passwordHash: a.pending.passwordHash, verified: true })
        return
      }
      case 'RoleGranted': {
        const a = tx.get<AccountDoc>(ACCOUNTS, event.data.accountId)
        if (a && !a.roles.includes(event.data.role))
          tx.put(ACCOUNTS, a.accountId, { ...a, roles: [...a.roles, event.data.role] })
        return
      }
      case 'SessionStarted': {
        const { sessionId, accountId, tokenHash, expiresAt } = event.data
        tx.put(SESSIONS, tokenHash, {
          sessionId,
          accountId,
          tokenHash,
          expiresAt,
          startedAt: recorded.time,
          ended: false,
        } satisfies SessionDoc)
        tx.put(SESSION_IDS, sessionId, tokenHash)
        return
      }
      case 'SessionEnded': {
        const hash = tx.get<string>(SESSION_IDS, event.data.sessionId)
        const s = hash === undefined ? undefined : tx.get<SessionDoc>(SESSIONS, hash)
        if (s) tx.put(SESSIONS, s.tokenHash, { ...s, ended: true })
        return
      }
      case 'LoginBlockLifted': {
        const { accountId, ip } = event.data
        const bump = (id: string) => tx.put(LOGIN_LIFTS, id, (tx.get<number>(LOGIN_LIFTS, id) ?? 0) + 1)
        if (ip === undefined) return bump(`account:${accountId}`)
        bump(`account-ip:${accountId}:${ip}`)
        bump(`ip:${ip}`)
        return
      }
      case 'AccountErasureStarted': {
        if (tx.get(ERASED_ACCOUNTS, event.data.accountId) !== undefined) return
        tx.put(ERASURES_STARTED, event.data.accountId, {
          ...event.data,
          actor: typeof recorded.metadata.actor === 'string' ? recorded.metadata.actor : 'unknown',
          position: recorded.position,
        } satisfies ErasureStartedDoc)
        return
      }
      case 'AccountErased': {
        tx.delete(ERASURES_STARTED, event.data.accountId)
        // R12: the account and its address lookup go; the address is free for a new sign-up
        const a = tx.get<AccountDoc>(ACCOUNTS, event.data.accountId)
        if (a) {
          if (tx.get<string>(BY_EMAIL, a.emailHash) === a.accountId) tx.delete(BY_EMAIL, a.emailHash)
          if (a.pending) tx.delete(VERIFICATIONS, a.pending.tokenHash)
          tx.delete(ACCOUNTS, a.accountId)
        }
        tx.put(ERASED_ACCOUNTS, event.data.accountId, {
          accountId: event.data.accountId,
          erasedAt: event.data.erasedAt,
        } satisfies ErasedAccountDoc)
        return
      }
      case 'EmailReserved':
      case 'AccountExported':
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

export const accountById = (docs: Documents, accountId: string): AccountDoc | undefined =>
  docs.get<AccountDoc>(ACCOUNTS, accountId)

export function accountByEmailHash(docs: Documents, emailHash: string): AccountDoc | undefined {
  const id = docs.get<string>(BY_EMAIL, emailHash)
  return id === undefined ? undefined : accountById(docs, id)
}

export const erasureStarted = (docs: Documents, accountId: string): ErasureStartedDoc | undefined =>
  docs.get<ErasureStartedDoc>(ERASURES_STARTED, accountId)

/** erasures that started and did not finish (no AccountErased yet), oldest first */
export function pendingErasures(docs: Documents): ErasureStartedDoc[] {
  return [...docs.values<ErasureStartedDoc>(ERASURES_STARTED)].sort((a, b) => a.position - b.position)
}

export const erasedAccount = (docs: Documents, accountId: string): ErasedAccountDoc | undefined =>
  docs.get<ErasedAccountDoc>(ERASED_ACCOUNTS, accountId)

/** the account's sessions that have not ended (expired ones included: ending them costs nothing) */
export function openSessionsOf(docs: Documents, accountId: string): SessionDoc[] {
  return [...docs.values<SessionDoc>(SESSIONS)].filter((s) => s.accountId === accountId && !s.ended)
}

export const sessionByTokenHash = (docs: Documents, tokenHash: string): SessionDoc | undefined =>
  docs.get<SessionDoc>(SESSIONS, tokenHash)

export function sessionById(docs: Documents, sessionId: string): SessionDoc | undefined {
  const hash = docs.get<string>(SESSION_IDS, sessionId)
  return hash === undefined ? undefined : sessionByTokenHash(docs, hash)
}

export const verificationByTokenHash = (docs: Documents, tokenHash: string): VerificationDoc | undefined =>
  docs.get<VerificationDoc>(VERIFICATIONS, tokenHash)

/** how often the login limits were lifted for this account and address (login-limiter.ts loginKeys) */
export function loginLifts(docs: Documents, accountId: string | undefined, ip: string): LoginLifts {
  const count = (id: string) => docs.get<number>(LOGIN_LIFTS, id) ?? 0
  return {
    account: accountId ? count(`account:${accountId}`) : 0,
    accountIp: accountId ? count(`account-ip:${accountId}:${ip}`) : 0,
    ip: count(`ip:${ip}`),
  }
}
