import type { FastifyInstance, FastifyRequest } from 'fastify'
import { revokeDevice } from '../../devices/enroll.ts'
import { DEVICES, type DeviceView } from '../../devices/registry.ts'
import { accountStream, type PrivilegedRouteUsed } from '../accounts/events.ts'
import type { ApiContext } from '../context.ts'
import { accountMetadata, authenticateAccount, principal, requireRole } from '../plugins/account-auth.ts'
import { deviceIdPattern, errorResponses } from '../schemas.ts'

// Ops (R3, R4, R11): revocation is the devices context's DeviceRevoked event; reads by ops are
// evented too (PrivilegedRouteUsed), so that what a stolen ops token looked at can be listed.

export async function recordPrivilegedRead(ctx: ApiContext, req: FastifyRequest, role: 'ops' | 'auditor', query?: Record<string, unknown>): Promise<void> {
  const event: PrivilegedRouteUsed = { type: 'PrivilegedRouteUsed', data: { accountId: principal(req).accountId, role, route: `${req.method} ${req.routeOptions.url ?? ''}`, ...(query ? { query } : {}) } }
  await ctx.store.append(accountStream(principal(req).accountId), [{ ...event, metadata: accountMetadata(req) }])
}

export async function opsRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts
  app.addHook('onRequest', authenticateAccount(ctx))
  app.addHook('onRequest', requireRole('ops'))
  const security = [{ bearer: [] }]

  app.post<{ Params: { deviceId: string }; Body: { reason: string } }>('/v1/ops/devices/:deviceId/revoke', {
    schema: {
      tags: ['ops'],
      summary: 'revoke a toy and all its certificates (R3)',
      security,
      params: { type: 'object', additionalProperties: false, required: ['deviceId'], properties: { deviceId: { type: 'string', pattern: deviceIdPattern } } },
      body: { type: 'object', additionalProperties: false, required: ['reason'], properties: { reason: { type: 'string', minLength: 3, maxLength: 500 } } },
      response: { 200: { type: 'object', properties: { deviceId: { type: 'string' }, status: { type: 'string' } } }, ...errorResponses },
    },
  }, async (req) => {
    const meta = accountMetadata(req)
    await revokeDevice({ store: ctx.store, actor: meta.actor!, credential: meta.credential, sealedSource: principal(req).source, correlationId: req.id, now: ctx.now(), docs: ctx.docs }, req.params.deviceId, req.body.reason)
    await ctx.catchUp()
    return { deviceId: req.params.deviceId, status: 'revoked' }
  })

  app.get('/v1/ops/devices', {
    schema: { tags: ['ops'], summary: 'every toy with its status', security, response: { 200: { type: 'object', properties: { devices: { type: 'array', items: { type: 'object', additionalProperties: true } } } }, ...errorResponses } },
  }, async (req) => {
    await recordPrivilegedRead(ctx, req, 'ops')
    return { devices: [...ctx.docs.values<DeviceView>(DEVICES)] }
  })

  app.get<{ Querystring: { limit: number } }>('/v1/ops/alerts', {
    schema: {
      tags: ['ops'],
      summary: 'the newest security alerts (R11)',
      security,
      querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } },
      response: { 200: { type: 'object', properties: { alerts: { type: 'array', items: { type: 'object', additionalProperties: true } } } }, ...errorResponses },
    },
  }, async (req) => {
    await recordPrivilegedRead(ctx, req, 'ops', { limit: req.query.limit })
    const alerts = await ctx.store.readStream('alerts', { direction: 'backwards', maxCount: req.query.limit })
    return { alerts: alerts.map((e) => ({ id: e.id, position: e.position, time: e.time, type: e.type, data: e.data })) }
  })
}
