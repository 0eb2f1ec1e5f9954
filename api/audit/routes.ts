import type { FastifyInstance } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import type { ApiContext } from '../context.ts'
import { accountMetadata, authenticateAccount, requireRole } from '../plugins/account-auth.ts'
import { recordPrivilegedRead } from '../ops/routes.ts'
import { errorResponses } from '../schemas.ts'

// Auditors (R16, R17): paged replay of the history, verification of the tamper-evident log and
// breach reports. The last two are the projections context's; bin/ passes them in as `audit`.

export interface AuditPort {
  verify(): Promise<Record<string, unknown>>
  breachReport(request: { credential: string; from: string; to: string; actor: string }): Promise<Record<string, unknown>>
}

export async function auditRoutes(app: FastifyInstance, opts: { ctx: ApiContext; audit: AuditPort | undefined }): Promise<void> {
  const { ctx, audit } = opts
  app.addHook('onRequest', authenticateAccount(ctx))
  app.addHook('onRequest', requireRole('auditor'))
  const security = [{ bearer: [] }]
  const unavailable = () => new KennelError('KENNEL_ERR_UNAVAILABLE', 'audit verification and breach reports are not wired into this API process; use `kennel audit verify` / `kennel audit report`')

  app.get<{ Querystring: { from: number; limit: number; stream?: string } }>('/v1/audit/events', {
    schema: {
      tags: ['audit'],
      summary: 'paged replay: events after position `from`',
      security,
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          from: { type: 'integer', minimum: 0, default: 0 },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
          stream: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,199}$' },
        },
      },
      response: { 200: { type: 'object', properties: { events: { type: 'array', items: { type: 'object', additionalProperties: true } }, next: { type: 'integer' } } }, ...errorResponses },
    },
  }, async (req) => {
    const { from, limit, stream } = req.query
    await recordPrivilegedRead(ctx, req, 'auditor', { from, limit, ...(stream ? { stream } : {}) })
    const events = await ctx.store.readAll({ after: from, maxCount: limit, ...(stream ? { filter: { streamPrefixes: [stream] } } : {}) })
    return { events, next: events.at(-1)?.position ?? from }
  })

  app.get('/v1/audit/verify', {
    schema: { tags: ['audit'], summary: 'verify the tamper-evident audit log (R17)', security, response: { 200: { type: 'object', additionalProperties: true }, ...errorResponses } },
  }, async (req) => {
    if (!audit) throw unavailable()
    await recordPrivilegedRead(ctx, req, 'auditor')
    return audit.verify()
  })

  app.post<{ Body: { credential: string; from: string; to: string } }>('/v1/audit/breach-reports', {
    schema: {
      tags: ['audit'],
      summary: 'reconstruct what a credential touched and who to notify (R16)',
      security,
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['credential', 'from', 'to'],
        properties: {
          credential: { type: 'string', pattern: '^(device|cert|account|token):[A-Za-z0-9-]{1,100}$' },
          // checked by the report itself (projections/breach parseInstant), the same way for the
          // CLI, with a message that names the bad value
          from: { type: 'string', maxLength: 64, description: 'ISO 8601 date-time with Z or an offset, or a date (UTC midnight); inclusive' },
          to: { type: 'string', maxLength: 64, description: 'ISO 8601 date-time with Z or an offset, or a date (UTC midnight); exclusive' },
        },
      },
      response: { 201: { type: 'object', additionalProperties: true }, ...errorResponses },
    },
  }, async (req, reply) => {
    if (!audit) throw unavailable()
    const report = await audit.breachReport({ ...req.body, actor: accountMetadata(req).actor! })
    return reply.status(201).send(report)
  })
}
