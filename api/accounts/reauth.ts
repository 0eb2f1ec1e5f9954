import argon2 from 'argon2'
import type { FastifyRequest } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import type { ApiContext } from '../context.ts'
import { accountStream, type LoginFailed } from './events.ts'
import { loginKeys, normaliseIp } from './login-limiter.ts'
import { type AccountDoc, loginLifts } from './projection.ts'

// What a bearer token alone must not do (R12): erase a family, or hand over everything kept about
// it (export: the address, the household names, where they and their toys connected from, and a
// download URL for every recording). A token left on a shared tablet, or lifted from a browser,
// does neither: the holder gives their password again, under the login limits, so a wrong one is
// a LoginFailed and counts towards the waits like a failed login. Erasure always asks for it; the
// export also answers a GET within KENNEL_EXPORT_FRESH_LOGIN_SECONDS of the session's login (the
// login was the password), which bounds, not closes, the use of a token stolen in those minutes.

/** the password, given again; KENNEL_ERR_REAUTH_REQUIRED without one, KENNEL_ERR_LOGIN_FAILED
 * (recorded) when it is wrong, KENNEL_ERR_RATE_LIMITED while the login waits run. `nothing` says
 * what did not happen: "nothing was erased". */
export async function confirmPassword(
  ctx: ApiContext,
  req: FastifyRequest,
  account: AccountDoc,
  password: string | undefined,
  nothing: string,
): Promise<void> {
  if (password === undefined || password.length === 0)
    throw new KennelError(
      'KENNEL_ERR_REAUTH_REQUIRED',
      `this needs your password again: send {"password": "…"} (${nothing})`,
    )
  const keys = loginKeys(account.emailHash, req.ip, loginLifts(ctx.docs, account.accountId, normaliseIp(req.ip)))
  const block = await ctx.loginLimiter.blocked(keys)
  if (block)
    throw new KennelError(
      'KENNEL_ERR_RATE_LIMITED',
      `too many wrong passwords; wait ${block.retryAfterSeconds} s before the next attempt`,
      { retryAfterSeconds: block.retryAfterSeconds },
    )
  if (!(await argon2.verify(account.passwordHash, password))) {
    await ctx.loginLimiter.failed(keys)
    ctx.metrics.authFailures.inc({ kind: 'password' })
    const failed: LoginFailed = {
      type: 'LoginFailed',
      data: { accountId: account.accountId, emailHash: account.emailHash, ip: req.ip, reason: 'wrong-password' },
    }
    await ctx.append(accountStream(account.accountId), [
      {
        ...failed,
        metadata: {
          actor: 'anonymous',
          credential: `password:${account.accountId}`,
          sourceIp: req.ip,
          correlationId: req.id,
        },
      },
    ])
    throw new KennelError('KENNEL_ERR_LOGIN_FAILED', `the password is wrong: ${nothing}`)
  }
  await ctx.loginLimiter.succeeded(keys)
}
