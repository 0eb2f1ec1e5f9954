import { KennelError } from '../../infra/errors.ts'
import type { Decider } from '../../infra/eventstore/command.ts'
import type { AccountCreated, AccountEvent, AccountVerified, VerificationRequested } from './events.ts'

// The account (stream `account-{accountId}`): pure decide/evolve, handled by the one command
// handler (infra/eventstore/command.ts). Ids, token hashes, password hashes and time come in with
// the command. What is not decided here, and why:
// - one account per e-mail address: decided on the `email-{emailHash}` stream before
//   CreateAccount (email-reservation.ts), since no account's stream can see another's;
// - logins and logouts (routes.ts): the password, the login limits and the session are checked
//   on the read model and the limiter; SessionStarted, SessionEnded and LoginFailed are appended
//   without an expected revision, so the concurrent logins of one account never conflict;
// - erasure and export (erasure.ts, export.ts) span households, devices and recordings.

export interface PendingVerification {
  verificationId: string
  tokenHash: string
  expiresAt: string
}

export interface AccountState {
  accountId: string | undefined
  verified: boolean
  erased: boolean
  /** the newest token of an unconfirmed account: the only one that confirms it */
  pending: PendingVerification | undefined
}

export const initialAccountState: AccountState = {
  accountId: undefined,
  verified: false,
  erased: false,
  pending: undefined,
}

export type AccountCommand =
  | {
      type: 'CreateAccount'
      accountId: string
      emailHash: string
      emailSealed: string
      passwordHash: string
      now: Date
      verification: VerificationRequested['data']
    }
  | { type: 'RequestVerification'; verification: VerificationRequested['data'] }
  | { type: 'VerifyAccount'; tokenHash: string; now: Date }

export function decide(command: AccountCommand, state: AccountState): AccountEvent[] {
  switch (command.type) {
    case 'CreateAccount': {
      // the id is new and random: an existing stream is a conflict, as an append with no_stream
      if (state.accountId !== undefined)
        throw new KennelError('KENNEL_ERR_WRONG_EXPECTED_REVISION', `account ${command.accountId} already exists`)
      const { accountId, emailHash, emailSealed, passwordHash, now, verification } = command
      const created: AccountCreated = {
        type: 'AccountCreated',
        data: {
          accountId,
          emailHash,
          emailSealed,
          passwordHash,
          createdAt: now.toISOString(),
          verificationRequired: true,
        },
      }
      return [created, { type: 'VerificationRequested', data: verification }]
    }
    case 'RequestVerification': {
      if (state.accountId === undefined) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such account')
      // confirmed or erased meanwhile: a new token would confirm nothing
      if (state.verified || state.erased) return []
      return [{ type: 'VerificationRequested', data: command.verification }]
    }
    case 'VerifyAccount': {
      if (state.verified)
        throw new KennelError('KENNEL_ERR_VERIFICATION_USED', 'this address is already confirmed; log in')
      if (!state.pending || state.pending.tokenHash !== command.tokenHash)
        throw new KennelError(
          'KENNEL_ERR_VERIFICATION_EXPIRED',
          'a newer confirmation mail replaced this token; use the newest one',
        )
      if (Date.parse(state.pending.expiresAt) <= command.now.getTime())
        throw new KennelError(
          'KENNEL_ERR_VERIFICATION_EXPIRED',
          'the token has expired; sign up again for a new confirmation mail',
        )
      const verified: AccountVerified = {
        type: 'AccountVerified',
        data: {
          accountId: state.accountId!,
          verificationId: state.pending.verificationId,
          verifiedAt: command.now.toISOString(),
        },
      }
      return [verified]
    }
    default: {
      const _: never = command
      return _
    }
  }
}

export function evolve(state: AccountState, event: AccountEvent): AccountState {
  switch (event.type) {
    case 'AccountCreated':
      // accounts created before sign-up confirmation existed are verified
      return { ...state, accountId: event.data.accountId, verified: event.data.verificationRequired !== true }
    case 'VerificationRequested': {
      const { verificationId, tokenHash, expiresAt } = event.data
      return state.verified ? state : { ...state, pending: { verificationId, tokenHash, expiresAt } }
    }
    case 'AccountVerified':
      return { ...state, verified: true, pending: undefined }
    case 'AccountErased':
      return { ...state, erased: true, pending: undefined }
    case 'SessionStarted':
    case 'SessionEnded':
    case 'EmailReserved':
    case 'RoleGranted':
    case 'LoginFailed':
    case 'LoginBlockLifted':
    case 'PrivilegedRouteUsed':
    case 'AccountExported':
    case 'AccountErasureStarted':
      return state
    default: {
      const _: never = event
      return _
    }
  }
}

export const accountDecider: Decider<AccountCommand, AccountState, AccountEvent> = {
  initialState: initialAccountState,
  evolve,
  decide,
}
