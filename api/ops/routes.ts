import type { FastifyInstance, FastifyRequest } from 'fastify'
import { revokeDevice } from '../../devices/revoke.ts'
import { deviceStream } from '../../devices/events.ts'
import {
  CERTIFICATES,
  certificateView,
  DEVICES,
  deviceView,
  type CertificateView,
  type DeviceView,
} from '../../devices/registry.ts'
import { KennelError } from '../../infra/errors.ts'
import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { accountStream, type PrivilegedRouteUsed } from '../accounts/events.ts'
import { pendingErasures } from '../accounts/projection.ts'
import type { ApiContext } from '../context.ts'
import { accountMetadata, authenticateAccount, principal, requireRole } from '../plugins/account-auth.ts'
import { deviceIdPattern, errorResponses } from '../schemas.ts'
import { streamAlerts } from './live-alerts.ts'
import { ERASED } from '../accounts/personal-data.ts'
import { householdOfSource } from '../../infra/keystore/sealed-source.ts'

/** the broker's events whose data held the toy's address before it was sealed (broker/events.ts) */
const CONNECTION_EVENTS = new Set(['DeviceConnected', 'DeviceDisconnected'])

// Ops (R3, R4, R11): revocation is the devices context's DeviceRevoked event; reads by ops are
// evented too (PrivilegedRouteUsed), so that what a stolen ops token looked at can be listed.

export async function recordPrivilegedRead(
  ctx: ApiContext,
  req: FastifyRequest,
  role: 'ops' | 'auditor',
  query?: Record<string, unknown>,
): Promise<void> {
  const event: PrivilegedRouteUsed = {
    type: 'PrivilegedRouteUsed',
    data: {
      accountId: principal(req).accountId,
      role,
      route: `${req.method} ${req.routeOptions.url ?? ''}`,
      ...(query ? { query } : {}),
    },
  }
  await ctx.store.append(accountStream(principal(req).accountId), [{ ...event, metadata: accountMetadata(req) }])
}

/** the broker's stream of a toy's sessions and messages (broker/events.ts mqttStream), by name:
 * the API does not import the broker */
const mqttStream = (deviceId: string): string => `mqtt-${deviceId}`

/** what the fleet page shows of a toy: its view, when its newest certificate expires, whether the
 * broker last reported it connected, and when the broker last reported it at all */
function fleetEntry(
  ctx: ApiContext,
  d: DeviceView,
): DeviceView & { certificateExpiresAt: string | null; connected: boolean; lastSeenAt: string | null } {
  const connected =
    d.lastConnectedAt !== undefined && (d.lastDisconnectedAt === undefined || d.lastConnectedAt > d.lastDisconnectedAt)
  const lastSeenAt =
    [d.lastConnectedAt, d.lastDisconnectedAt]
      .filter((x) => x !== undefined)
      .sort()
      .at(-1) ?? null
  return {
    ...d,
    certificateExpiresAt: d.currentSerial ? (certificateView(ctx.docs, d.currentSerial)?.notAfter ?? null) : null,
    connected,
    lastSeenAt,
  }
}

/** an event of a toy's timeline, without the claim code's hash: it derives from the secret on the
 * toy's box, and ops have no use for it (auditors see whole events). A paired toy's address is
 * sealed with its household's key (R12): a connection's `ip` is opened here, `[erased]` once the
 * household was erased. */
async function timelineEntry(ctx: ApiContext, e: RecordedEvent) {
  const { claimCodeHash: _, ...data } = e.data as Record<string, unknown>
  const household = householdOfSource(e.metadata)
  if (household !== undefined && CONNECTION_EVENTS.has(e.type) && typeof e.metadata.sourceIpSealed === 'string')
    data.ip = (await ctx.householdSources.open(household, e.metadata.sourceIpSealed)) ?? ERASED
  return {
    id: e.id,
    stream: e.stream,
    position: e.position,
    time: e.time,
    type: e.type,
    data,
    actor: e.metadata.actor ?? null,
  }
}

export async function opsRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts
  app.addHook('onRequest', authenticateAccount(ctx))
  app.addHook('onRequest', requireRole('ops'))
  const security = [{ bearer: [] }]

  app.post<{ Params: { deviceId: string }; Body: { reason: string } }>(
    '/v1/ops/devices/:deviceId/revoke',
    {
      schema: {
        tags: ['ops'],
        summary: 'revoke a toy and all its certificates (R3)',
        security,
        params: {
          type: 'object',
          additionalProperties: false,
          required: ['deviceId'],
          properties: { deviceId: { type: 'string', pattern: deviceIdPattern } },
        },
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['reason'],
          properties: { reason: { type: 'string', minLength: 3, maxLength: 500 } },
        },
        response: {
          200: { type: 'object', properties: { deviceId: { type: 'string' }, status: { type: 'string' } } },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const meta = accountMetadata(req)
      await revokeDevice(
        {
          store: ctx.store,
          actor: meta.actor!,
          credential: meta.credential,
          sealedSource: principal(req).source,
          correlationId: req.id,
          now: ctx.now(),
          docs: ctx.docs,
        },
        req.params.deviceId,
        req.body.reason,
      )
      await ctx.catchUp()
      return { deviceId: req.params.deviceId, status: 'revoked' }
    },
  )

  app.get(
    '/v1/ops/devices',
    {
      schema: {
        tags: ['ops'],
        summary: 'every toy with its status',
        security,
        response: {
          200: {
            type: 'object',
            properties: { devices: { type: 'array', items: { type: 'object', additionalProperties: true } } },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      await recordPrivilegedRead(ctx, req, 'ops')
      return { devices: [...ctx.docs.values<DeviceView>(DEVICES)].map((d) => fleetEntry(ctx, d)) }
    },
  )

  app.get<{ Params: { deviceId: string }; Querystring: { limit: number } }>(
    '/v1/ops/devices/:deviceId',
    {
      schema: {
        tags: ['ops'],
        summary:
          'a toy, its certificates and its timeline: the newest events of its device and MQTT streams, newest first',
        security,
        params: {
          type: 'object',
          additionalProperties: false,
          required: ['deviceId'],
          properties: { deviceId: { type: 'string', pattern: deviceIdPattern } },
        },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              device: { type: 'object', additionalProperties: true },
              certificates: { type: 'array', items: { type: 'object', additionalProperties: true } },
              timeline: { type: 'array', items: { type: 'object', additionalProperties: true } },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const { deviceId } = req.params
      await recordPrivilegedRead(ctx, req, 'ops', { deviceId, limit: req.query.limit })
      const device = deviceView(ctx.docs, deviceId)
      if (!device) throw new KennelError('KENNEL_ERR_DEVICE_UNKNOWN', `no toy ${deviceId}`)
      const read = (stream: string) =>
        ctx.store.readStream(stream, { direction: 'backwards', maxCount: req.query.limit })
      const events = [...(await read(deviceStream(deviceId))), ...(await read(mqttStream(deviceId)))]
        .sort((a, b) => b.position - a.position)
        .slice(0, req.query.limit)
      const certificates = device.serials
        .map((serial) => ctx.docs.get<CertificateView>(CERTIFICATES, serial))
        .filter((c) => c !== undefined)
      return {
        device: fleetEntry(ctx, device),
        certificates,
        timeline: await Promise.all(events.map((e) => timelineEntry(ctx, e))),
      }
    },
  )

  app.get(
    '/v1/ops/erasures',
    {
      schema: {
        tags: ['ops'],
        summary:
          'erasures that started and did not finish (AccountErasureStarted without AccountErased), oldest first: finish each with `kennel account erase <accountId> --reason <text>` (R12)',
        security,
        response: {
          200: {
            type: 'object',
            properties: { erasures: { type: 'array', items: { type: 'object', additionalProperties: true } } },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      await recordPrivilegedRead(ctx, req, 'ops')
      return { erasures: pendingErasures(ctx.docs).map(({ position: _, ...e }) => e) }
    },
  )

  app.get<{ Querystring: { limit: number } }>(
    '/v1/ops/alerts',
    {
      schema: {
        tags: ['ops'],
        summary: 'the newest security alerts (R11)',
        security,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
        },
        response: {
          200: {
            type: 'object',
            properties: { alerts: { type: 'array', items: { type: 'object', additionalProperties: true } } },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      await recordPrivilegedRead(ctx, req, 'ops', { limit: req.query.limit })
      const alerts = await ctx.store.readStream('alerts', { direction: 'backwards', maxCount: req.query.limit })
      return {
        alerts: alerts.map((e) => ({ id: e.id, position: e.position, time: e.time, type: e.type, data: e.data })),
      }
    },
  )

  app.get<{ Querystring: { limit: number } }>(
    '/v1/ops/alerts/live',
    {
      schema: {
        tags: ['ops'],
        summary:
          'the newest security alerts, then each new one as it is raised: text/event-stream, one `alert` event per alert (R11); read with fetch and the bearer token',
        security,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { limit: { type: 'integer', minimum: 0, maximum: 1000, default: 50 } },
        },
        response: {
          200: {
            description: 'a stream of server-sent events',
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      // one PrivilegedRouteUsed for the whole stream, not one per alert or per poll
      await recordPrivilegedRead(ctx, req, 'ops', { limit: req.query.limit, live: true })
      return streamAlerts(ctx.store, req, reply, req.query.limit)
    },
  )
}
