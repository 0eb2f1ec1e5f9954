import { randomUUID } from 'node:crypto'
import argon2 from 'argon2'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import type { ApiContext } from '../context.ts'
import { accountMetadata, authenticateAccount, principal } from '../plugins/account-auth.ts'
import { errorResponses } from '../schemas.ts'
import { accountStream, type LoginFailed, type SessionEnded, type SessionStarted } from './events.ts'
import { loginKeys, normaliseIp } from './login-limiter.ts'
import { accountByEmailHash, accountById, loginLifts, sessionById } from './projection.ts'
import { eraseAccount, HOLDER_REQUEST } from './erasure.ts'
import { confirmPassword } from './reauth.ts'
import { exportAccount } from './export.ts'
import { issueDownloadUrl } from '../recordings/service.ts'
import { passwordProblem } from './password-policy.ts'
import { hashPassword, signUp } from './signup.ts'
import { newToken, tokenHash, VERIFICATION_TOKEN_PATTERN } from './tokens.ts'
import { verifyAccount } from './verification.ts'
import { type RateLimitExceeded, securityStream } from '../../infra/net/events.ts'
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
// shorter than the longest login wait, so a long wait still reports its refusals each minute (R11)
const REFUSAL_EVENT_BLOCK_MS = 60_000

export async function accountRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts
  // verified against when the e-mail is unknown, so both answers take the same work
  const dummyHash = await hashPassword(ctx, newToken())
  const recordLimited = (event: RateLimitExceeded, metadata: Record<string, string>): Promise<void> =>
    ctx.append(securityStream(ctx.now()), [{ ...event, metadata }]).then(() => undefined)
  // one event per limit, account and IP per minute; the rest of a burst is counted (R11, R19)
  const limited = new FoldedRefusals<{
    req: FastifyRequest
    event: RateLimitExceeded
    metadata: Record<string, string>
  }>(REFUSAL_EVENT_BLOCK_MS, ({ req, event, metadata }, refusals) =>
    recordLimited({ ...event, data: { ...event.data, refusals } }, metadata).catch((err: unknown) =>
      req.log.error({ err }, 'could not record refused logins'),
    ),
  )
  app.addHook('onClose', () => limited.flush())

  app.post<{ Body: { email: string; password: string } }>(
    '/v1/accounts',
    {
      schema: {
        tags: ['accounts'],
        summary:
          'sign up: the same answer whether or not the address has an account; the confirmation token comes by mail (R15 password policy)',
        body: credentials,
        response: {
          202: { type: 'object', properties: { status: { type: 'string', enum: ['verification-pending'] } } },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const { email, password } = req.body
      // depends only on what was sent, so it tells nothing about the address
      const problem = await passwordProblem(password, email)
      if (problem) throw new KennelError('KENNEL_ERR_WEAK_PASSWORD', problem)
      await signUp(ctx, email, password, { sourceIp: req.ip, correlationId: req.id })
      return reply.status(202).send({ status: 'verification-pending' })
    },
  )

  app.post<{ Body: { token: string } }>(
    '/v1/accounts/verify',
    {
      schema: {
        tags: ['accounts'],
        summary: 'confirm the address with the token from the sign-up mail (once, before it expires)',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['token'],
          properties: { token: { type: 'string', pattern: VERIFICATION_TOKEN_PATTERN } },
        },
        response: {
          200: {
            type: 'object',
            properties: { accountId: { type: 'string' }, status: { type: 'string', enum: ['verified'] } },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => ({
      accountId: await verifyAccount(ctx, req.body.token, { sourceIp: req.ip, correlationId: req.id }),
      status: 'verified',
    }),
  )

  app.post<{ Body: { email: string; password: string } }>(
    '/v1/sessions',
    {
      schema: {
        tags: ['accounts'],
        summary: 'log in: a bearer token (brute-force limited, R6)',
        body: credentials,
        response: {
          200: { type: 'object', properties: { token: { type: 'string' }, expiresAt: { type: 'string' } } },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const { email, password } = req.body
      const emailHash = ctx.emails.hash(email)
      // an account made, or confirmed, through another node a moment ago may not have reached this
      // one's read model yet
      let account = accountByEmailHash(ctx.docs, emailHash)
      if (!account?.verified) {
        await ctx.catchUp()
        account = accountByEmailHash(ctx.docs, emailHash)
      }
      const keys = loginKeys(emailHash, req.ip, loginLifts(ctx.docs, account?.accountId, normaliseIp(req.ip)))
      const block = await ctx.loginLimiter.blocked(keys)
      if (block) {
        ctx.metrics.rateLimited.inc({ limit: block.limit })
        const event: RateLimitExceeded = {
          type: 'RateLimitExceeded',
          data: {
            listener: 'api',
            limit: block.limit,
            ip: req.ip,
            retryAfterSeconds: block.retryAfterSeconds,
            ...(account ? { accountId: account.accountId } : {}),
            refusals: 1,
          },
        }
        const metadata = {
          actor: 'anonymous',
          ...(account ? { credential: `password:${account.accountId}` } : {}),
          sourceIp: req.ip,
        }
        if (
          limited.count(
            `${block.limit}:${block.limit === 'login-ip-day' ? '' : emailHash}:${req.ip}`,
            ctx.now().getTime(),
            { req, event, metadata },
          )
        )
          await recordLimited(event, metadata)
        throw new KennelError(
          'KENNEL_ERR_RATE_LIMITED',
          block.limit === 'login-ip-day'
            ? `too many failed logins from this address today; try again in ${block.retryAfterSeconds} s`
            : `too many failed logins; wait ${block.retryAfterSeconds} s before the next attempt`,
          { retryAfterSeconds: block.retryAfterSeconds },
        )
      }
      const ok = await argon2.verify(account?.passwordHash ?? dummyHash, password)
      if (!account || !ok) {
        await ctx.loginLimiter.failed(keys)
        ctx.metrics.authFailures.inc({ kind: 'password' })
        const failed: LoginFailed = {
          type: 'LoginFailed',
          data: {
            emailHash,
            ip: req.ip,
            reason: account ? 'wrong-password' : 'unknown-account',
            ...(account ? { accountId: account.accountId } : {}),
          },
        }
        const stream = account ? accountStream(account.accountId) : securityStream(ctx.now())
        await ctx.append(stream, [
          {
            ...failed,
            metadata: {
              actor: 'anonymous',
              ...(account ? { credential: `password:${account.accountId}` } : {}),
              sourceIp: req.ip,
              correlationId: req.id,
            },
          },
        ])
        throw new KennelError('KENNEL_ERR_LOGIN_FAILED', LOGIN_FAILED)
      }
      if (!account.verified) {
        const refused: LoginFailed = {
          type: 'LoginFailed',
          data: { accountId: account.accountId, emailHash, ip: req.ip, reason: 'unverified' },
        }
        await ctx.append(accountStream(account.accountId), [
          {
            ...refused,
            metadata: {
              actor: 'anonymous',
              credential: `password:${account.accountId}`,
              sourceIp: req.ip,
              correlationId: req.id,
            },
          },
        ])
        throw new KennelError(
          'KENNEL_ERR_ACCOUNT_UNVERIFIED',
          'confirm your e-mail address first: the token is in the mail kennel sent when you signed up (sign up again for a new one)',
        )
      }
      await ctx.loginLimiter.succeeded(keys)
      const token = newToken()
      const sessionId = randomUUID()
      const expiresAt = new Date(ctx.now().getTime() + ctx.config.sessionTtlMinutes * 60_000).toISOString()
      const started: SessionStarted = {
        type: 'SessionStarted',
        data: { accountId: account.accountId, sessionId, tokenHash: tokenHash(token), expiresAt },
      }
      await ctx.append(accountStream(account.accountId), [
        {
          ...started,
          metadata: {
            actor: `account:${account.accountId}`,
            credential: `password:${account.accountId}`,
            ...(await ctx.personalData.source(account.accountId, req.ip)),
            correlationId: req.id,
          },
        },
      ])
      return { token, expiresAt }
    },
  )

  // R12: the holder erases themselves. A bearer token alone is not enough (a token left on a
  // shared tablet must not erase a family): the password is given again, under the login limits.
  app.delete<{ Body: { password: string } }>(
    '/v1/accounts/me',
    {
      onRequest: authenticateAccount(ctx),
      schema: {
        tags: ['accounts'],
        summary:
          'erase my account (password given again): my address and the names I gave are shredded, households of which I am the last member are erased with their recordings, their toys revoked and unpaired; every session ends',
        security: [{ bearer: [] }],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['password'],
          properties: { password: { type: 'string', minLength: 1, maxLength: 256 } },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              accountId: { type: 'string' },
              status: { type: 'string', enum: ['erased'] },
              householdIds: { type: 'array', items: { type: 'string' } },
              deviceIds: { type: 'array', items: { type: 'string' } },
              recordings: { type: 'integer' },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const p = principal(req)
      const account = accountById(ctx.docs, p.accountId)
      if (!account)
        throw new KennelError(
          'KENNEL_ERR_UNAUTHENTICATED',
          'the session token is invalid or has been revoked; log in again',
        )
      await confirmPassword(ctx, req, account, req.body.password, 'nothing was erased')
      await ctx.catchUp()
      // no source address: the key it would be sealed with is the one being shredded
      const metadata = { actor: `account:${p.accountId}`, credential: `token:${p.sessionId}`, correlationId: req.id }
      const erased = await eraseAccount(
        {
          store: ctx.store,
          docs: ctx.docs,
          blobs: ctx.blobs,
          personKeys: ctx.personalData,
          householdKeys: ctx.householdSources,
          now: ctx.now(),
          metadata,
        },
        account.accountId,
        HOLDER_REQUEST,
      )
      await ctx.catchUp()
      return {
        accountId: erased.accountId,
        status: 'erased',
        householdIds: erased.householdIds,
        deviceIds: erased.deviceIds,
        recordings: erased.recordingIds.length,
      }
    },
  )

  // R12 (ETSI EN 303 645 5.11): a parent's own data, sealed values opened with their key. Not on
  // a bearer token alone (reauth.ts): GET answers within KENNEL_EXPORT_FRESH_LOGIN_SECONDS of
  // the session's login (the login was the password, as a "sudo mode" asks), POST with the
  // password again at any time.
  const sendExport = async (req: FastifyRequest, reply: FastifyReply) => {
    const metadata = accountMetadata(req)
    await ctx.catchUp()
    const document = await exportAccount(
      {
        store: ctx.store,
        docs: ctx.docs,
        emails: ctx.emails,
        personalData: ctx.personalData,
        householdSources: ctx.householdSources,
        now: ctx.now(),
        metadata,
        downloadUrl: (r) => issueDownloadUrl(ctx, r, metadata),
      },
      principal(req).accountId,
    )
    return reply
      .header('content-disposition', 'attachment; filename="kennel-export.json"')
      .header('cache-control', 'no-store')
      .send(document)
  }
  const exportSummary =
    'everything kennel holds about me and my households as one JSON document: account, households, toys, recordings with download URLs, the events that name them; recorded as AccountExported'

  app.get(
    '/v1/accounts/me/export',
    {
      onRequest: authenticateAccount(ctx),
      schema: {
        tags: ['accounts'],
        summary: `${exportSummary}. Answers within KENNEL_EXPORT_FRESH_LOGIN_SECONDS (300) of the login; later 403 KENNEL_ERR_REAUTH_REQUIRED: log in again, or POST the password`,
        security: [{ bearer: [] }],
        response: { 200: { type: 'object', additionalProperties: true }, ...errorResponses },
      },
    },
    async (req, reply) => {
      const window = ctx.config.exportFreshLoginSeconds * 1000
      const since = ctx.now().getTime() - principal(req).loggedInAt
      if (window === 0 || since > window)
        throw new KennelError(
          'KENNEL_ERR_REAUTH_REQUIRED',
          window === 0
            ? 'the export needs your password again: POST /v1/accounts/me/export with {"password": "…"} (nothing was exported)'
            : `the export needs a login of the last ${ctx.config.exportFreshLoginSeconds} s: log in again (POST /v1/sessions), or POST /v1/accounts/me/export with {"password": "…"} (nothing was exported)`,
        )
      return sendExport(req, reply)
    },
  )

  app.post<{ Body: { password?: string } }>(
    '/v1/accounts/me/export',
    {
      onRequest: authenticateAccount(ctx),
      // no body at all is a missing password too (KENNEL_ERR_REAUTH_REQUIRED), not a malformed request
      preValidation: async (req) => void (req.body ??= {}),
      schema: {
        tags: ['accounts'],
        summary: `${exportSummary}. The password given again, at any time`,
        security: [{ bearer: [] }],
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { password: { type: 'string', maxLength: 256 } },
        },
        response: { 200: { type: 'object', additionalProperties: true }, ...errorResponses },
      },
    },
    async (req, reply) => {
      const account = accountById(ctx.docs, principal(req).accountId)
      if (!account)
        throw new KennelError(
          'KENNEL_ERR_UNAUTHENTICATED',
          'the session token is invalid or has been revoked; log in again',
        )
      await confirmPassword(ctx, req, account, req.body.password, 'nothing was exported')
      return sendExport(req, reply)
    },
  )

  app.get(
    '/v1/sessions/current',
    {
      onRequest: authenticateAccount(ctx),
      schema: {
        tags: ['accounts'],
        summary:
          "who this token is: the account, its roles and when the session expires (the console shows each role's pages)",
        security: [{ bearer: [] }],
        response: {
          200: {
            type: 'object',
            properties: {
              accountId: { type: 'string' },
              roles: { type: 'array', items: { type: 'string' } },
              expiresAt: { type: 'string' },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const p = principal(req)
      return { accountId: p.accountId, roles: p.roles, expiresAt: sessionById(ctx.docs, p.sessionId)?.expiresAt }
    },
  )

  app.delete(
    '/v1/sessions/current',
    {
      onRequest: authenticateAccount(ctx),
      schema: {
        tags: ['accounts'],
        summary: 'log out: revoke this token',
        security: [{ bearer: [] }],
        response: { 204: { type: 'null' }, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = principal(req)
      const ended: SessionEnded = {
        type: 'SessionEnded',
        data: { accountId: p.accountId, sessionId: p.sessionId, reason: 'logout' },
      }
      await ctx.append(accountStream(p.accountId), [{ ...ended, metadata: accountMetadata(req) }])
      return reply.status(204).send()
    },
  )
}
