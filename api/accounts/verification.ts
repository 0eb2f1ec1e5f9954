import { randomUUID } from 'node:crypto'
import { KennelError } from '../../infra/errors.ts'
import { handleCommand } from '../../infra/eventstore/command.ts'
import type { ApiContext } from '../context.ts'
import { accountDecider, decide } from './account.ts'
import { accountStream, type VerificationRequested } from './events.ts'
import { verificationByTokenHash } from './projection.ts'
import { newVerificationToken, tokenHash } from './tokens.ts'

// Confirming the address of a new account (R15): a sign-up mails a token (VerificationRequested
// keeps its hash); POST /v1/accounts/verify accepts the newest token of an unconfirmed account
// once, before it expires (AccountVerified). The decision is made on the account's own stream
// (account.ts) and appended with its revision, so two uses of one token cannot both succeed.

/** a new token for the account, bound to the password given with this sign-up */
export function newVerification(
  ctx: ApiContext,
  accountId: string,
  passwordHash: string,
): { token: string; event: VerificationRequested } {
  const token = newVerificationToken()
  const expiresAt = new Date(ctx.now().getTime() + ctx.config.verificationTtlHours * 3_600_000).toISOString()
  return {
    token,
    event: {
      type: 'VerificationRequested',
      data: { accountId, verificationId: randomUUID(), tokenHash: tokenHash(token), passwordHash, expiresAt },
    },
  }
}

/** confirm the address whose mail carried `token`; returns the account id */
export async function verifyAccount(
  ctx: ApiContext,
  token: string,
  request: { sourceIp: string; correlationId: string },
): Promise<string> {
  const hash = tokenHash(token)
  // a sign-up made through another node a moment ago may not have reached this one's read model
  const known =
    verificationByTokenHash(ctx.docs, hash) ?? (await ctx.catchUp(), verificationByTokenHash(ctx.docs, hash))
  if (!known)
    throw new KennelError(
      'KENNEL_ERR_VERIFICATION_INVALID',
      'this token is not one kennel sent; check the mail and try again',
    )
  const metadata = {
    actor: `account:${known.accountId}`,
    credential: `token:${known.verificationId}`,
    ...(await ctx.personalData.source(known.accountId, request.sourceIp)),
    correlationId: request.correlationId,
  }
  // another event of the account first (a second use of the token, a failed login): decided again
  await handleCommand(
    ctx.store,
    accountStream(known.accountId),
    accountDecider,
    (state) => decide({ type: 'VerifyAccount', tokenHash: hash, now: ctx.now() }, state),
    { append: ctx.append, metadata },
  )
  return known.accountId
}
