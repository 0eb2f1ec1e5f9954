import type { FastifyReply, FastifyRequest } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import type { Role } from '../accounts/events.ts'
import { accountById, sessionByTokenHash } from '../accounts/projection.ts'
import { isTokenShaped, tokenHash } from '../accounts/tokens.ts'
import type { ApiContext } from '../context.ts'
import type { SealedSource } from '../accounts/personal-data.ts'

// Parents, ops and auditors authenticate with a bearer session token (R4). These hooks are the
// only way account policy enters the routes, and they run as onRequest hooks: before the body is
// parsed and before params, query and body are validated, so a caller without the right token or
// role gets 401/403 and learns nothing of the route's schema (R4, R13).

export interface AccountPrincipal {
  accountId: string
  sessionId: string
  /** when the session's login was recorded: epoch ms, 0 when unknown */
  loggedInAt: number
  roles: readonly Role[]
  /** where the request came from, sealed with the account's key (R12) */
  source: SealedSource
}

declare module 'fastify' {
  interface FastifyRequest {
    account: AccountPrincipal | null
  }
}

export function authenticateAccount(ctx: ApiContext) {
  return async function authenticate(req: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const header = req.headers.authorization ?? ''
    const match = /^Bearer ([^\s]+)$/.exec(header)
    if (!match)
      throw new KennelError(
        'KENNEL_ERR_UNAUTHENTICATED',
        'this route needs "Authorization: Bearer <token>" from POST /v1/sessions',
      )
    const token = match[1]!
    const session = isTokenShaped(token) ? sessionByTokenHash(ctx.docs, tokenHash(token)) : undefined
    if (!session || session.ended) {
      ctx.metrics.authFailures.inc({ kind: 'token' })
      throw new KennelError(
        'KENNEL_ERR_UNAUTHENTICATED',
        'the session token is invalid or has been revoked; log in again',
      )
    }
    if (Date.parse(session.expiresAt) <= ctx.now().getTime()) {
      ctx.metrics.authFailures.inc({ kind: 'token-expired' })
      throw new KennelError('KENNEL_ERR_UNAUTHENTICATED', 'the session has expired; log in again')
    }
    const account = accountById(ctx.docs, session.accountId)
    if (!account)
      throw new KennelError(
        'KENNEL_ERR_UNAUTHENTICATED',
        'the session token is invalid or has been revoked; log in again',
      )
    // KENNEL_ACCOUNT_API_LIMITS: a token, stolen or scripted, cannot flood the API with requests,
    // each an event, a key or a mail (R6)
    await ctx.accountLimiter.admit(req, account.accountId, {
      data: { accountId: account.accountId },
      metadata: { actor: `account:${account.accountId}`, credential: `token:${session.sessionId}`, sourceIp: req.ip },
    })
    req.account = {
      accountId: account.accountId,
      sessionId: session.sessionId,
      loggedInAt: session.startedAt === undefined ? 0 : Date.parse(session.startedAt),
      roles: account.roles,
      source: await ctx.personalData.source(account.accountId, req.ip),
    }
  }
}

export function requireRole(role: Role) {
  return async function authorizeRole(req: FastifyRequest): Promise<void> {
    if (!req.account?.roles.includes(role))
      throw new KennelError('KENNEL_ERR_FORBIDDEN', `this route needs the ${role} role`)
  }
}

export function principal(req: FastifyRequest): AccountPrincipal {
  if (!req.account) throw new KennelError('KENNEL_ERR_UNAUTHENTICATED', 'not authenticated')
  return req.account
}

/** event metadata for an authenticated account's action (docs/EVENTS.md): the source address
 * only sealed with the account's key, so that erasing the person erases it (R12) */
export function accountMetadata(req: FastifyRequest): Record<string, string> {
  const p = principal(req)
  return { actor: `account:${p.accountId}`, credential: `token:${p.sessionId}`, ...p.source, correlationId: req.id }
}
