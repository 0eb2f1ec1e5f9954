import type { FastifyInstance } from 'fastify'
import type { Config } from '../../infra/config.ts'
import { publicReport, type ReadinessReport } from '../../infra/ops/readiness.ts'

// Public routes: nothing here returns user data (R13).

/** RFC 9116 security.txt (R10): Contact and Expires are required, Expires at most a year ahead. */
export function securityTxt(
  config: Pick<Config, 'securityContact' | 'securityTxtExpires'>,
  canonical: string,
  startedAt: Date,
): string {
  const expires = new Date(startedAt.getTime() + config.securityTxtExpires * 86_400_000)
  return [
    `Contact: ${config.securityContact}`,
    `Expires: ${expires.toISOString().replace(/\.\d{3}Z$/, 'Z')}`,
    'Preferred-Languages: en',
    `Canonical: ${canonical}`,
    '',
  ].join('\n')
}

const readinessSchema = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['ready', 'not ready'] },
    checks: { type: 'object', additionalProperties: { type: 'string', enum: ['ok', 'failing'] } },
  },
}

export async function publicRoutes(
  app: FastifyInstance,
  opts: { config: Config; publicUrl: () => string; startedAt: Date; readiness: () => Promise<ReadinessReport> },
): Promise<void> {
  const { config, publicUrl, startedAt } = opts
  // liveness: the process answers; it checks no dependency, so a store outage restarts nothing
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['public'],
        summary: 'liveness: the process answers (checks no dependency)',
        response: { 200: { type: 'object', properties: { status: { type: 'string' } } } },
      },
    },
    async () => ({ status: 'ok' }),
  )
  // readiness: which checks fail, without the figures (those are on the loopback operations listener)
  app.get(
    '/readyz',
    {
      schema: {
        tags: ['public'],
        summary:
          'readiness: event store reachable, read models within KENNEL_READY_MAX_LAG_EVENTS, listeners up; 503 when not',
        response: { 200: readinessSchema, 503: readinessSchema },
      },
    },
    async (_req, reply) => {
      const report = await opts.readiness()
      return reply
        .code(report.ready ? 200 : 503)
        .header('cache-control', 'no-store')
        .send(publicReport(report))
    },
  )

  app.get(
    '/.well-known/security.txt',
    { schema: { tags: ['public'], summary: 'RFC 9116 security contact (R10)' } },
    async (_req, reply) => {
      // the configured origin, not the request's Host header (R13)
      const canonical = `${publicUrl()}/.well-known/security.txt`
      return reply
        .type('text/plain; charset=utf-8')
        .header('cache-control', 'public, max-age=86400')
        .send(securityTxt(config, canonical, startedAt))
    },
  )
}
