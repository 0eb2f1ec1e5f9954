import type { FastifyReply, FastifyRequest } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import { type RateLimitExceeded, securityStream } from '../../infra/net/events.ts'
import { FoldedRefusals } from '../../infra/net/folded-refusals.ts'
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

/** one RateLimitExceeded per account and window per minute; the rest of a flood is counted and
 * recorded with the next one, or when the API stops (R11) */
type Limited = { req: FastifyRequest; event: RateLimitExceeded; metadata: Record<string, string> }
const floods = new WeakMap<ApiContext, FoldedRefusals<Limited>>()
const REFUSAL_EVENT_BLOCK_MS = 60_000

function floodsOf(ctx: ApiContext): FoldedRefusals<Limited> {
  let folded = floods.get(ctx)
  if (!folded) {
    folded = new FoldedRefusals<Limited>(REFUSAL_EVENT_BLOCK_MS, ({ req, event, metadata }, refusals) =>
      appendLimited(ctx, { ...event, data: { ...event.data, refusals } }, metadata).catch((err: unknown) =>
        req.log.error({ err }, 'could not record rate-limited account requests'),
      ),
    )
    floods.set(ctx, folded)
  }
  return folded
}

const appendLimited = (ctx: ApiContext, event: RateLimitExceeded, metadata: Record<string, string>): Promise<void> =>
  ctx.store.append(securityStream(ctx.now()), [{ ...event, metadata }]).then(() => undefined)

/** the refusals of the account limit counted since their last event, recorded (when the API stops) */
export function flushAccountLimits(ctx: ApiContext): Promise<void> {
  return floods.get(ctx)?.flush() ?? Promise.resolve()
}

/** KENNEL_ACCOUNT_API_LIMITS: a token, stolen or scripted, cannot flood the API with requests,
 * each an event, a key or a mail (R6); 429 with Retry-After, and one RateLimitExceeded per window
 * per minute */
async function limitAccount(ctx: ApiContext, req: FastifyRequest, accountId: string, sessionId: string): Promise<void> {
  const refusal = await ctx.accountLimiter.consume(accountId)
  if (!refusal) return
  ctx.metrics.rateLimited.inc({ limit: 'account-api' })
  const event: RateLimitExceeded = {
    type: 'RateLimitExceeded',
    data: {
      listener: 'api',
      limit: 'account-api',
      window: refusal.window,
      accountId,
      ip: req.ip,
      retryAfterSeconds: refusal.retryAfterSeconds,
      refusals: 1,
    },
  }
  const metadata = { actor: `account:${accountId}`, credential: `token:${sessionId}`, sourceIp: req.ip }
  if (floodsOf(ctx).count(`account-api:${accountId}:${refusal.window}`, ctx.now().getTime(), { req, event, metadata }))
    await appendLimited(ctx, event, metadata)
  throw new KennelError(
    'KENNEL_ERR_RATE_LIMITED',
    `rate limit ${refusal.window} per account exceeded; retry in ${refusal.retryAfterSeconds} s`,
    { retryAfterSeconds: refusal.retryAfterSeconds },
  )
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
    await limitAccount(ctx, req, account.accountId, session.sessionId)
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
