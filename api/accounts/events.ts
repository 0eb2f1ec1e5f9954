// Events of the accounts context, in `account-{accountId}` (docs/EVENTS.md). Refusals without a
// known account (unknown e-mail, rate limits) go to `security-{yyyy-mm-dd}`.

export type Role = 'ops' | 'auditor'
export const roles: readonly Role[] = ['ops', 'auditor']

export interface AccountCreated {
  type: 'AccountCreated'
  data: {
    accountId: string
    /** HMAC-SHA256 of the normalised e-mail under a key derived from the master key: a lookup, not the address */
    emailHash: string
    /** the e-mail sealed with the account's own key (R12: erasing that key shreds it) */
    emailSealed: string
    /** argon2id (R15) */
    passwordHash: string
    createdAt: string
    /** true: the address must be confirmed (VerificationRequested, AccountVerified) before the
     * first login; absent on accounts created before sign-up confirmation existed (verified) */
    verificationRequired?: true
  }
}

/** a confirmation mail was sent: its token (only the hash is kept) confirms the address once,
 * until it expires or a newer one is requested; confirming makes `passwordHash`, the one chosen
 * with this sign-up, the account's password (so a sign-up by someone without the mailbox cannot
 * set the password of the account the mailbox owner confirms) */
export interface VerificationRequested {
  type: 'VerificationRequested'
  data: {
    accountId: string
    /** the token's public id (credential `token:{verificationId}`) */
    verificationId: string
    /** SHA-256 of the token; the token itself is only in the mail */
    tokenHash: string
    /** argon2id of the password given with this sign-up (R15) */
    passwordHash: string
    expiresAt: string
  }
}

/** the address was confirmed with the token of `verificationId`; logins are allowed from now on */
export interface AccountVerified {
  type: 'AccountVerified'
  data: { accountId: string; verificationId: string; verifiedAt: string }
}

/** in `email-{emailHash}`, appended with an expected revision before AccountCreated: the address
 * belongs to one account (api/accounts/email-reservation.ts) */
export interface EmailReserved {
  type: 'EmailReserved'
  data: { emailHash: string; accountId: string; reservedAt: string }
}

export interface RoleGranted {
  type: 'RoleGranted'
  data: { accountId: string; role: Role; grantedAt: string }
}

export interface SessionStarted {
  type: 'SessionStarted'
  data: {
    accountId: string
    /** the token's public id (credential `token:{sessionId}`) */
    sessionId: string
    /** SHA-256 of the bearer token; the token itself is never stored */
    tokenHash: string
    expiresAt: string
  }
}

export interface SessionEnded {
  type: 'SessionEnded'
  /** `account-erased`: every open session ends with the account (AccountErased follows in the same append) */
  data: { accountId: string; sessionId: string; reason: 'logout' | 'account-erased' }
}

export type LoginFailedReason = 'wrong-password' | 'unknown-account' | 'rate-limited' | 'unverified'

export interface LoginFailed {
  type: 'LoginFailed'
  data: { accountId?: string; emailHash: string; reason: LoginFailedReason; ip: string }
}

/** `kennel account unblock`: the account's login waits start again from zero, at every address
 * or, with `ip`, at that address (whose daily count of failures starts again too) (R6) */
export interface LoginBlockLifted {
  type: 'LoginBlockLifted'
  data: { accountId: string; ip?: string; liftedAt: string }
}

/** an ops or auditor read: privileged reads are events too (R4) */
export interface PrivilegedRouteUsed {
  type: 'PrivilegedRouteUsed'
  data: { accountId: string; role: Role; route: string; query?: Record<string, unknown> }
}

/** An erasure began (R12): appended before its first step, so that one interrupted midway (a
 * crash, a blob store down) is listed until its AccountErased (`kennel account erasures
 * --pending`) and finished by running it again. What it is about to erase, as AccountErased lists
 * it, and the same reason; nothing personal, no source address. A repeated erasure appends none:
 * it finishes the one started. */
export interface AccountErasureStarted {
  type: 'AccountErasureStarted'
  data: {
    accountId: string
    startedAt: string
    reason: string
    householdIds: string[]
    deviceIds: string[]
    recordingIds: string[]
  }
}

/** The person was erased (R12): their person key is shredded, so every value sealed with it
 * (address, household names, source addresses) reads `[erased]` from now on; the households of
 * which they were the last member went with them (recording key shredded, recordings deleted,
 * toys revoked and unpaired). Who (accountId), when and why (reason; the actor in metadata), and
 * nothing personal: `reason` is `holder-request` for DELETE /v1/accounts/me, the operator's text
 * for `kennel account erase`. */
export interface AccountErased {
  type: 'AccountErased'
  data: {
    accountId: string
    erasedAt: string
    reason: string
    householdIds: string[]
    deviceIds: string[]
    recordingIds: string[]
  }
}

/** the person's data was exported (GET /v1/accounts/me/export, `kennel account export`): what
 * the document held, counted; the actor in metadata (R12, R19) */
export interface AccountExported {
  type: 'AccountExported'
  data: { accountId: string; exportedAt: string; households: number; recordings: number; events: number }
}

export type AccountEvent =
  | AccountCreated
  | VerificationRequested
  | AccountVerified
  | EmailReserved
  | RoleGranted
  | SessionStarted
  | SessionEnded
  | LoginFailed
  | LoginBlockLifted
  | PrivilegedRouteUsed
  | AccountErasureStarted
  | AccountErased
  | AccountExported

export const accountStream = (accountId: string): string => `account-${accountId}`
export const emailStream = (emailHash: string): string => `email-${emailHash}`
