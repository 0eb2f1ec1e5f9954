import type { FastifyInstance, FastifyRequest } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import { deviceView } from '../../devices/registry.ts'
import type { ApiContext } from '../context.ts'
import { memberHousehold } from '../households/access.ts'
import { householdById } from '../households/projection.ts'
import { accountMetadata, authenticateAccount, principal } from '../plugins/account-auth.ts'
import { deviceIdPattern, errorResponses, uuidParam } from '../schemas.ts'
import {
  recordingById,
  recordingsOfHousehold,
  recordingView,
  recordingViewSchema,
  type RecordingDoc,
} from './projection.ts'
import { completeRecording, createRecording, issueDownloadUrl, newRecordingBody, presignedSchema } from './service.ts'

/** R4: a recording of another household answers exactly like a missing one */
function memberRecording(ctx: ApiContext, req: FastifyRequest, recordingId: string): RecordingDoc {
  const r = recordingById(ctx.docs, recordingId)
  const h = r && householdById(ctx.docs, r.householdId)
  if (!r || !h?.members.includes(principal(req).accountId))
    throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such recording')
  return r
}

export async function recordingRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts
  app.addHook('onRequest', authenticateAccount(ctx))
  const security = [{ bearer: [] }]

  app.get<{ Params: { householdId: string } }>(
    '/v1/households/:householdId/recordings',
    {
      schema: {
        tags: ['recordings'],
        summary: "the household's recordings",
        security,
        params: uuidParam('householdId'),
        response: {
          200: { type: 'object', properties: { recordings: { type: 'array', items: recordingViewSchema } } },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const h = memberHousehold(ctx.docs, principal(req).accountId, req.params.householdId)
      return { recordings: recordingsOfHousehold(ctx.docs, h.householdId).map(recordingView) }
    },
  )

  app.post<{
    Params: { householdId: string }
    Body: { deviceId: string; contentType: string; bytes: number; sha256?: string }
  }>(
    '/v1/households/:householdId/recordings',
    {
      schema: {
        tags: ['recordings'],
        summary: 'a message for a toy of the household: an upload URL (R5)',
        security,
        params: uuidParam('householdId'),
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['deviceId', 'contentType', 'bytes'],
          properties: { deviceId: { type: 'string', pattern: deviceIdPattern }, ...newRecordingBody },
        },
        response: { 201: presignedSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const h = memberHousehold(ctx.docs, principal(req).accountId, req.params.householdId)
      const { deviceId, contentType, bytes, sha256 } = req.body
      if (!h.deviceIds.includes(deviceId))
        throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such toy in this household')
      if (deviceView(ctx.docs, deviceId)?.status === 'revoked')
        throw new KennelError('KENNEL_ERR_DEVICE_REVOKED', 'this toy is revoked')
      const issued = await createRecording(
        ctx,
        { householdId: h.householdId, deviceId, direction: 'to-device', contentType, bytes, sha256 },
        accountMetadata(req),
      )
      return reply.status(201).send(issued)
    },
  )

  app.post<{ Params: { recordingId: string } }>(
    '/v1/recordings/:recordingId/complete',
    {
      schema: {
        tags: ['recordings'],
        summary:
          'mark uploaded: checks the stored object has the declared size (and SHA-256), records its SHA-256, then tells the toy',
        security,
        params: uuidParam('recordingId'),
        response: { 200: recordingViewSchema, ...errorResponses },
      },
    },
    async (req) => {
      const r = memberRecording(ctx, req, req.params.recordingId)
      await completeRecording(ctx, r.recordingId, accountMetadata(req))
      return recordingView(recordingById(ctx.docs, r.recordingId)!)
    },
  )

  app.get<{ Params: { recordingId: string } }>(
    '/v1/recordings/:recordingId/download-url',
    {
      schema: {
        tags: ['recordings'],
        summary: 'a short-lived download URL (R5)',
        security,
        params: uuidParam('recordingId'),
        response: { 200: presignedSchema, ...errorResponses },
      },
    },
    async (req) => issueDownloadUrl(ctx, memberRecording(ctx, req, req.params.recordingId), accountMetadata(req)),
  )
}
