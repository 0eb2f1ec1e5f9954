import { randomUUID } from 'node:crypto'
import { KennelError } from '../../infra/errors.ts'
import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import type { ApiContext } from '../context.ts'
import { accountStream, type AccountEvent, type AccountVerified, type VerificationRequested } from './events.ts'
import { verificationByTokenHash } from './projection.ts'
import { newVerificationToken, tokenHash } from './tokens.ts'

// Confirming the address of a new account (R15): a sign-up mails a token (VerificationRequested
// keeps its hash); POST /v1/accounts/verify accepts the newest token of an unconfirmed account
// once, before it expires (AccountVerified). The decision is made on the account's own stream and
// appended with its revision, so two uses of one token cannot both succeed.

export interface VerificationState {
  verified: boolean
  pending?: { verificationId: string; tokenHash: string; expiresAt: string }
}

export function evolveVerification(state: VerificationState, recorded: RecordedEvent): VerificationState {
  const event = { type: recorded.type, data: recorded.data } as AccountEvent
  switch (event.type) {
    case 'AccountCreated':
      return { verified: event.data.verificationRequired !== true }
    case 'VerificationRequested': {
      const { verificationId, tokenHash, expiresAt } = event.data
      return state.verified ? state : { ...state, pending: { verificationId, tokenHash, expiresAt } }
    }
    case 'AccountVerified':
      return { verified: true }
    default:
      return state
  }
}

export function decideVerify(state: VerificationState, accountId: string, hash: string, now: Date): AccountVerified {
  if (state.verified) throw new KennelError('KENNEL_ERR_VERIFICATION_USED', 'this address is already confirmed; log in')
  if (!state.pending || state.pending.tokenHash !== hash) throw new KennelError('KENNEL_ERR_VERIFICATION_EXPIRED', 'a newer confirmation mail replaced this token; use the newest one')
  if (Date.parse(state.pending.expiresAt) <= now.getTime()) throw new KennelError('KENNEL_ERR_VERIFICATION_EXPIRED', 'the token has expired; sign up again for a new confirmation mail')
  return { type: 'AccountVerified', data: { accountId, verificationId: state.pending.verificationId, verifiedAt: now.toISOString() } }
}

/** a new token for the account, bound to the password given with this sign-up */
export function newVerification(ctx: ApiContext, accountId: string, passwordHash: string): { token: string; event: VerificationRequested } {
  const token = newVerificationToken()
  const expiresAt = new Date(ctx.now().getTime() + ctx.config.verificationTtlHours * 3_600_000).toISOString()
  return { token, event: { type: 'VerificationRequested', data: { accountId, verificationId: randomUUID(), tokenHash: tokenHash(token), passwordHash, expiresAt } } }
}

const MAX_ATTEMPTS = 3

/** confirm the address whose mail carried `token`; returns the account id */
export async function verifyAccount(ctx: ApiContext, token: string, request: { sourceIp: string; correlationId: string }): Promise<string> {
  const hash = tokenHash(token)
  // a sign-up made through another node a moment ago may not have reached this one's read model
  const known = verificationByTokenHash(ctx.docs, hash) ?? (await ctx.catchUp(), verificationByTokenHash(ctx.docs, hash))
  if (!known) throw new KennelError('KENNEL_ERR_VERIFICATION_INVALID', 'this token is not one kennel sent; check the mail and try again')
  const stream = accountStream(known.accountId)
  for (let attempt = 1; ; attempt++) {
    const events = await ctx.store.readStream(stream)
    const verified = decideVerify(events.reduce(evolveVerification, { verified: false }), known.accountId, hash, ctx.now())
    const metadata = { actor: `account:${known.accountId}`, credential: `token:${verified.data.verificationId}`, ...(await ctx.personalData.source(known.accountId, request.sourceIp)), correlationId: request.correlationId }
    try {
      await ctx.append(stream, [{ ...verified, metadata }], events.at(-1)!.revision)
      return known.accountId
    } catch (err) {
      // another event of the account came first (a second use of the token, a failed login): decide again
      if (!(err instanceof KennelError && err.code === 'KENNEL_ERR_WRONG_EXPECTED_REVISION') || attempt === MAX_ATTEMPTS) throw err
    }
  }
}
