import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { handleCommand } from '../../infra/eventstore/command.ts'
import { claimDevice } from '../../devices/claim.ts'
import type { DeviceCa } from '../../devices/ca.ts'
import { deviceView } from '../../devices/registry.ts'
import type { ApiContext } from '../context.ts'
import { ERASED } from '../accounts/personal-data.ts'
import { accountMetadata, authenticateAccount, principal } from '../plugins/account-auth.ts'
import { errorResponses, uuidParam } from '../schemas.ts'
import { memberHousehold } from './access.ts'
import { householdStream } from './events.ts'
import { decide, householdDecider } from './household.ts'
import { householdNameLabel, householdsOf } from './projection.ts'

const deviceSummary = {
  type: 'object',
  properties: { deviceId: { type: 'string' }, status: { type: 'string' }, claimedAt: { type: 'string' } },
} as const

// printable text with something besides spaces: no control characters (they would reach every
// screen the name is shown on)
const householdName = {
  type: 'string',
  minLength: 1,
  maxLength: 100,
  pattern: '^[^\\u0000-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f][^\\u0000-\\u001f\\u007f]*$',
} as const

export async function householdRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts
  app.addHook('onRequest', authenticateAccount(ctx))
  const security = [{ bearer: [] }]

  app.post<{ Body: { name?: string } }>(
    '/v1/households',
    {
      schema: {
        tags: ['households'],
        summary: 'create a household owned by the caller',
        security,
        // unknown fields are refused (400), not dropped; the name is personal data: sealed in the event (R12)
        body: { type: 'object', additionalProperties: false, properties: { name: householdName } },
        response: {
          201: {
            type: 'object',
            properties: { householdId: { type: 'string' }, name: { type: 'string', nullable: true } },
          },
          ...errorResponses,
        },
      },
      // the body is optional: a request without one is validated as {}
      preValidation: async (req) => void (req.body ??= {}),
    },
    async (req, reply) => {
      const p = principal(req)
      const householdId = randomUUID()
      const name = req.body.name?.trim()
      const nameSealed = name
        ? await ctx.personalData.seal(p.accountId, householdNameLabel(householdId), name)
        : undefined
      const create = {
        type: 'CreateHousehold',
        householdId,
        ownerAccountId: p.accountId,
        now: ctx.now(),
        nameSealed,
      } as const
      await handleCommand(ctx.store, householdStream(householdId), householdDecider, (state) => decide(create, state), {
        append: ctx.append,
        metadata: accountMetadata(req),
      })
      return reply.status(201).send({ householdId, name: name || null })
    },
  )

  app.get(
    '/v1/households',
    {
      schema: {
        tags: ['households'],
        summary: "the caller's households (name: null when none was given, [erased] once its owner was erased)",
        security,
        response: {
          200: {
            type: 'object',
            properties: {
              households: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    householdId: { type: 'string' },
                    name: { type: 'string', nullable: true },
                    deviceIds: { type: 'array', items: { type: 'string' } },
                  },
                },
              },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => ({
      households: await Promise.all(
        householdsOf(ctx.docs, principal(req).accountId).map(async (h) => ({
          householdId: h.householdId,
          name:
            h.nameSealed === undefined
              ? null
              : ((await ctx.personalData.open(h.ownerAccountId, householdNameLabel(h.householdId), h.nameSealed)) ??
                ERASED),
          deviceIds: h.deviceIds,
        })),
      ),
    }),
  )

  app.post<{ Params: { householdId: string }; Body: { claimCode: string } }>(
    '/v1/households/:householdId/devices',
    {
      schema: {
        tags: ['households'],
        summary: 'pair a toy with its claim code (printed at enrolment)',
        security,
        params: uuidParam('householdId'),
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['claimCode'],
          properties: { claimCode: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9._ -]+$' } },
        },
        response: { 201: { type: 'object', properties: { deviceId: { type: 'string' } } }, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = principal(req)
      const h = memberHousehold(ctx.docs, p.accountId, req.params.householdId)
      const meta = accountMetadata(req)
      const { deviceId } = await claimDevice(
        {
          store: ctx.store,
          ca: ctx.ca as DeviceCa,
          actor: meta.actor!,
          credential: meta.credential,
          sealedSource: p.source,
          correlationId: req.id,
          now: ctx.now(),
        },
        req.body.claimCode,
        h.householdId,
      )
      await ctx.catchUp()
      return reply.status(201).send({ deviceId })
    },
  )

  app.get<{ Params: { householdId: string } }>(
    '/v1/households/:householdId/devices',
    {
      schema: {
        tags: ['households'],
        summary: "the household's toys",
        security,
        params: uuidParam('householdId'),
        response: {
          200: { type: 'object', properties: { devices: { type: 'array', items: deviceSummary } } },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const h = memberHousehold(ctx.docs, principal(req).accountId, req.params.householdId)
      return {
        devices: h.deviceIds.map((deviceId) => {
          const v = deviceView(ctx.docs, deviceId)
          return { deviceId, status: v?.status ?? 'unknown', claimedAt: v?.claimedAt }
        }),
      }
    },
  )
}
