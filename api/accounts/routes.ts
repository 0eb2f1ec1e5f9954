import { randomUUID } from 'node:crypto'
import argon2 from 'argon2'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import type { ApiContext } from '../context.ts'
import { accountMetadata, authenticateAccount, principal } from '../plugins/account-auth.ts'
import { errorResponses } from '../schemas.ts'
import { accountStream, securityStream, type AccountCreated, type LoginFailed, type SessionEnded, type SessionStarted } from './events.ts'
import { reserveEmail } from './email-reservation.ts'
import { accountByEmailHash } from './projection.ts'
import { passwordProblem } from './password-policy.ts'
import { newToken, tokenHash } from './tokens.ts'
import type { RateLimitExceeded } from '../guard/events.ts'
import { FoldedRefusals } from '../../infra/net/folded-refusals.ts'

const credentials = {
  type: 'object',
  additionalProperties: false,
  required: ['email', 'password'],
  properties: {
    email: { type: 'string', format: 'email', minLength: 3, maxLength: 254 },
    password: { type: 'string', minLength: 1, maxLength: 256 },
  },
} as const

const LOGIN_FAILED = 'the e-mail address or the password is wrong'
// shorter than a login block (an hour), so a long block still reports its refusals each minute (R11)
const REFUSAL_EVENT_BLOCK_MS = 60_000

export async function accountRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts
  const hashOptions = { type: argon2.argon2id as 2, ...ctx.passwordHashing }
  // verified against when the e-mail is unknown, so both answers take the same work
  const dummyHash = await argon2.hash(newToken(), hashOptions)
  const recordLimited = (event: RateLimitExceeded, metadata: Record<string, string>): Promise<void> =>
    ctx.append(securityStream(ctx.now()), [{ ...event, metadata }]).then(() => undefined)
  // one event per limit, account and IP per minute; the rest of a burst is counted (R11, R19)
  const limited = new FoldedRefusals<{ req: FastifyRequest; event: RateLimitExceeded; metadata: Record<string, string> }>(REFUSAL_EVENT_BLOCK_MS, ({ req, event, metadata }, refusals) =>
    recordLimited({ ...event, data: { ...event.data, refusals } }, metadata).catch((err: unknown) => req.log.error({ err }, 'could not record refused logins')))
  app.addHook('onClose', () => limited.flush())

  app.post<{ Body: { email: string; password: string } }>('/v1/accounts', {
    schema: { tags: ['accounts'], summary: 'create a parent account (R15 password policy)', body: credentials, response: { 201: { type: 'object', properties: { accountId: { type: 'string' } } }, ...errorResponses } },
  }, async (req, reply) => {
    const { email, password } = req.body
    const problem = passwordProblem(password, email)
    if (problem) throw new KennelError('KENNEL_ERR_WEAK_PASSWORD', problem)
    const emailHash = ctx.emails.hash(email)
    // the read model answers the common case; the reservation decides a race (email-reservation.ts)
    if (accountByEmailHash(ctx.docs, emailHash)) throw new KennelError('KENNEL_ERR_ACCOUNT_EXISTS', 'an account with this e-mail address exists; log in instead')
    const accountId = randomUUID()
    const passwordHash = await argon2.hash(password, hashOptions)
    const metadata = { actor: `account:${accountId}`, sourceIp: req.ip, correlationId: req.id }
    await reserveEmail(ctx, emailHash, accountId, metadata)
    const event: AccountCreated = {
      type: 'AccountCreated',
      data: { accountId, emailHash, emailSealed: ctx.emails.seal(accountId, email), passwordHash, createdAt: ctx.now().toISOString() },
    }
    await ctx.append(accountStream(accountId), [{ ...event, metadata }], 'no_stream')
    return reply.status(201).send({ accountId })
  })

  app.post<{ Body: { email: string; password: string } }>('/v1/sessions', {
    schema: {
      tags: ['accounts'],
      summary: 'log in: a bearer token (brute-force limited, R6)',
      body: credentials,
      response: { 200: { type: 'object', properties: { token: { type: 'string' }, expiresAt: { type: 'string' } } }, ...errorResponses },
    },
  }, async (req) => {
    const { email, password } = req.body
    const emailHash = ctx.emails.hash(email)
    const account = accountByEmailHash(ctx.docs, emailHash)
    const block = await ctx.loginLimiter.blocked(emailHash, req.ip)
    if (block) {
      ctx.metrics.rateLimited.inc({ limit: block.limit })
      const event: RateLimitExceeded = { type: 'RateLimitExceeded', data: { limit: block.limit, ip: req.ip, retryAfterSeconds: block.retryAfterSeconds, ...(account ? { accountId: account.accountId } : {}), refusals: 1 } }
      const metadata = { actor: 'anonymous', ...(account ? { credential: `password:${account.accountId}` } : {}), sourceIp: req.ip }
      if (limited.count(`${block.limit}:${block.limit === 'login-ip-day' ? '' : emailHash}:${req.ip}`, ctx.now().getTime(), { req, event, metadata })) await recordLimited(event, metadata)
      throw new KennelError('KENNEL_ERR_RATE_LIMITED', `too many failed logins; try again in ${block.retryAfterSeconds} s`, { retryAfterSeconds: block.retryAfterSeconds })
    }
    const ok = await argon2.verify(account?.passwordHash ?? dummyHash, password)
    if (!account || !ok) {
      await ctx.loginLimiter.failed(emailHash, req.ip)
      ctx.metrics.authFailures.inc({ kind: 'password' })
      const failed: LoginFailed = { type: 'LoginFailed', data: { emailHash, ip: req.ip, reason: account ? 'wrong-password' : 'unknown-account', ...(account ? { accountId: account.accountId } : {}) } }
      const stream = account ? accountStream(account.accountId) : securityStream(ctx.now())
      await ctx.append(stream, [{ ...failed, metadata: { actor: 'anonymous', ...(account ? { credential: `password:${account.accountId}` } : {}), sourceIp: req.ip, correlationId: req.id } }])
      throw new KennelError('KENNEL_ERR_LOGIN_FAILED', LOGIN_FAILED)
    }
    await ctx.loginLimiter.succeeded(emailHash, req.ip)
    const token = newToken()
    const sessionId = randomUUID()
    const expiresAt = new Date(ctx.now().getTime() + ctx.config.sessionTtlMinutes * 60_000).toISOString()
    const started: SessionStarted = { type: 'SessionStarted', data: { accountId: account.accountId, sessionId, tokenHash: tokenHash(token), expiresAt } }
    await ctx.append(accountStream(account.accountId), [{ ...started, metadata: { actor: `account:${account.accountId}`, credential: `password:${account.accountId}`, sourceIp: req.ip, correlationId: req.id } }])
    return { token, expiresAt }
  })

  app.delete('/v1/sessions/current', {
    onRequest: authenticateAccount(ctx),
    schema: { tags: ['accounts'], summary: 'log out: revoke this token', security: [{ bearer: [] }], response: { 204: { type: 'null' }, ...errorResponses } },
  }, async (req, reply) => {
    const p = principal(req)
    const ended: SessionEnded = { type: 'SessionEnded', data: { accountId: p.accountId, sessionId: p.sessionId, reason: 'logout' } }
    await ctx.append(accountStream(p.accountId), [{ ...ended, metadata: accountMetadata(req) }])
    return reply.status(204).send()
  })
}
