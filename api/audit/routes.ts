import type { FastifyInstance } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'
import type { ApiContext } from '../context.ts'
import { accountMetadata, authenticateAccount, requireRole } from '../plugins/account-auth.ts'
import { recordPrivilegedRead } from '../ops/routes.ts'
import { errorResponses } from '../schemas.ts'

// Auditors (R16, R17): paged replay of the history, verification of the tamper-evident log and
// breach reports. The last two are the projections context's; bin/ passes them in as `audit`.

export interface AuditPort {
  verify(): Promise<Record<string, unknown>>
  /** the signed tree head with the largest size whose signature verifies, and where it is in the log */
  latestHead(): Promise<{
    size: number
    root: string
    time: string
    keyId: string
    signature: string
    position: number
  } | null>
  /** the report as JSON and its notification list as CSV (RFC 4180), both for the auditor only:
   * they hold the contact addresses, which the report's events never do */
  breachReport(request: {
    credential: string
    since: string
    until: string
    actor: string
  }): Promise<{ report: Record<string, unknown> & { reportId: string }; csv: string }>
}

/** the quality an Accept header gives one media type it names explicitly (0 when absent) */
function quality(accept: string, mediaType: string): number {
  let q = 0
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((p) => p.trim().toLowerCase())
    if (type !== mediaType) continue
    const given = params.find((p) => p.startsWith('q='))
    q = Math.max(q, given === undefined ? 1 : Number(given.slice(2)) || 0)
  }
  return q
}

/** the notification list is served as CSV when the caller asks for text/csv by name and prefers
 * it to JSON (RFC 9110 §12.5.1); JSON otherwise, also for a wildcard */
const wantsCsv = (accept: string | undefined): boolean =>
  accept !== undefined && quality(accept, 'text/csv') > quality(accept, 'application/json')

/** the position after which the first event recorded at or after `time` lies: a binary search
 * over positions, as the store records times in append order (one clock per store) */
async function positionBefore(store: EventStore, time: number): Promise<number> {
  let low = 0
  let high = await store.headPosition()
  while (low < high) {
    const mid = Math.floor((low + high) / 2)
    const [first] = await store.readAll({ after: mid, maxCount: 1 })
    if (first && Date.parse(first.time) < time) low = first.position
    else high = mid
  }
  return low
}

export async function auditRoutes(
  app: FastifyInstance,
  opts: { ctx: ApiContext; audit: AuditPort | undefined },
): Promise<void> {
  const { ctx, audit } = opts
  app.addHook('onRequest', authenticateAccount(ctx))
  app.addHook('onRequest', requireRole('auditor'))
  const security = [{ bearer: [] }]
  const unavailable = () =>
    new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      'audit verification and breach reports are not wired into this API process; use `kennel audit verify` / `kennel audit report`',
    )

  app.get<{
    Querystring: { from: number; limit: number; stream?: string; type?: string; since?: string; until?: string }
  }>(
    '/v1/audit/events',
    {
      schema: {
        tags: ['audit'],
        summary:
          'paged replay: events after position `from`, optionally of streams starting with `stream`, of one `type`, recorded at or after `since` and before `until`; `next` is the `from` of the next page, absent once `until` is passed',
        security,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            from: { type: 'integer', minimum: 0, default: 0 },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            stream: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,199}$' },
            type: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_.-]{0,99}$' },
            since: { type: 'string', format: 'date-time' },
            until: { type: 'string', format: 'date-time' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              events: { type: 'array', items: { type: 'object', additionalProperties: true } },
              next: { type: 'integer' },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const { limit, stream, type, since, until } = req.query
      await recordPrivilegedRead(ctx, req, 'auditor', {
        from: req.query.from,
        limit,
        ...(stream ? { stream } : {}),
        ...(type ? { type } : {}),
        ...(since ? { since } : {}),
        ...(until ? { until } : {}),
      })
      const from = since ? Math.max(req.query.from, await positionBefore(ctx.store, Date.parse(since))) : req.query.from
      const filter = { ...(stream ? { streamPrefixes: [stream] } : {}), ...(type ? { types: [type] } : {}) }
      const read = await ctx.store.readAll({ after: from, maxCount: limit, ...(stream || type ? { filter } : {}) })
      const end = until ? Date.parse(until) : Infinity
      const events = read.filter((e) => Date.parse(e.time) < end)
      const passedUntil = events.length < read.length
      return { events, ...(passedUntil ? {} : { next: read.at(-1)?.position ?? from }) }
    },
  )

  app.get(
    '/v1/audit/verify',
    {
      schema: {
        tags: ['audit'],
        summary: 'verify the tamper-evident audit log (R17)',
        security,
        response: { 200: { type: 'object', additionalProperties: true }, ...errorResponses },
      },
    },
    async (req) => {
      if (!audit) throw unavailable()
      await recordPrivilegedRead(ctx, req, 'auditor')
      return audit.verify()
    },
  )

  app.get(
    '/v1/audit/head',
    {
      schema: {
        tags: ['audit'],
        summary:
          'the latest signed tree head of the audit log (R17): size, Merkle root, time, key id, signature and its position; null before the first',
        security,
        response: {
          200: { type: 'object', properties: { head: { type: 'object', nullable: true, additionalProperties: true } } },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      if (!audit) throw unavailable()
      await recordPrivilegedRead(ctx, req, 'auditor')
      return { head: await audit.latestHead() }
    },
  )

  app.post<{ Body: { credential: string; since: string; until: string }; Querystring: { with?: 'csv' } }>(
    '/v1/audit/breach-reports',
    {
      schema: {
        tags: ['audit'],
        summary:
          'reconstruct what a credential touched and who to notify (R16); `Accept: text/csv` for the notification list as CSV, `?with=csv` for the JSON report with that CSV in `csv` (one report, recorded once)',
        security,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { with: { type: 'string', enum: ['csv'] } },
        },
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['credential', 'since', 'until'],
          properties: {
            credential: { type: 'string', pattern: '^(device|cert|account|token):[A-Za-z0-9-]{1,100}$' },
            // checked by the report itself (projections/breach parseInstant), the same way for the
            // CLI's --since/--until, with a message that names the bad value
            since: {
              type: 'string',
              maxLength: 64,
              description: 'ISO 8601 date-time with Z or an offset, or a date (UTC midnight); inclusive',
            },
            until: {
              type: 'string',
              maxLength: 64,
              description: 'ISO 8601 date-time with Z or an offset, or a date (UTC midnight); exclusive',
            },
          },
        },
        response: {
          201: {
            description:
              'the report (JSON), or with `Accept: text/csv` one row per account holder and household to notify',
            content: {
              'application/json': { schema: { type: 'object', additionalProperties: true } },
              'text/csv': { schema: { type: 'string' } },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      if (!audit) throw unavailable()
      const { report, csv } = await audit.breachReport({ ...req.body, actor: accountMetadata(req).actor! })
      if (req.query.with === 'csv') return reply.status(201).send({ ...report, csv })
      if (!wantsCsv(req.headers.accept)) return reply.status(201).send(report)
      return reply
        .status(201)
        .type('text/csv; charset=utf-8; header=present')
        .header('content-disposition', `attachment; filename="breach-report-${report.reportId}.csv"`)
        .send(csv)
    },
  )
}
