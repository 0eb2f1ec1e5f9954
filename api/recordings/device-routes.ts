import type { FastifyInstance, FastifyRequest } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import { deviceView } from '../../devices/registry.ts'
import type { ApiContext } from '../context.ts'
import { deviceMetadata, devicePrincipal } from '../plugins/device-auth.ts'
import { errorResponses, uuidParam } from '../schemas.ts'
import {
  recordingById,
  recordingsOfDevice,
  recordingView,
  recordingViewSchema,
  type RecordingDoc,
} from './projection.ts'
import { completeRecording, createRecording, issueDownloadUrl, newRecordingBody, presignedSchema } from './service.ts'

// The recordings' toy routes (R2, R4): registered inside api/devices/routes.ts, whose hook has
// authenticated the toy by its client certificate; a toy reaches only recordings addressed to it
// or made by it.

function ownRecording(ctx: ApiContext, req: FastifyRequest, recordingId: string): RecordingDoc {
  const r = recordingById(ctx.docs, recordingId)
  if (!r || r.deviceId !== devicePrincipal(req).deviceId)
    throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such recording')
  return r
}

export async function deviceRecordingRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts
  const security = [{ deviceCertificate: [] }]

  app.post<{ Body: { contentType: string; bytes: number; sha256?: string } }>(
    '/v1/device/recordings',
    {
      schema: {
        tags: ['device'],
        summary: 'a recording made by the toy for its household: an upload URL (R5)',
        security,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['contentType', 'bytes'],
          properties: newRecordingBody,
        },
        response: { 201: presignedSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { deviceId } = devicePrincipal(req)
      const householdId = deviceView(ctx.docs, deviceId)?.householdId
      if (!householdId) throw new KennelError('KENNEL_ERR_FORBIDDEN', 'this toy is not paired with a household yet')
      const issued = await createRecording(
        ctx,
        {
          householdId,
          deviceId,
          direction: 'from-device',
          contentType: req.body.contentType,
          bytes: req.body.bytes,
          sha256: req.body.sha256,
        },
        deviceMetadata(req),
      )
      return reply.status(201).send(issued)
    },
  )

  app.get(
    '/v1/device/recordings',
    {
      schema: {
        tags: ['device'],
        summary: 'recordings made by or addressed to this toy',
        security,
        response: {
          200: { type: 'object', properties: { recordings: { type: 'array', items: recordingViewSchema } } },
          ...errorResponses,
        },
      },
    },
    async (req) => ({ recordings: recordingsOfDevice(ctx.docs, devicePrincipal(req).deviceId).map(recordingView) }),
  )

  app.post<{ Params: { recordingId: string } }>(
    '/v1/device/recordings/:recordingId/complete',
    {
      schema: {
        tags: ['device'],
        summary: "mark the toy's upload complete (size and SHA-256 of the stored object checked)",
        security,
        params: uuidParam('recordingId'),
        response: { 200: recordingViewSchema, ...errorResponses },
      },
    },
    async (req) => {
      const r = ownRecording(ctx, req, req.params.recordingId)
      await completeRecording(ctx, r.recordingId, deviceMetadata(req))
      return recordingView(recordingById(ctx.docs, r.recordingId)!)
    },
  )

  app.get<{ Params: { recordingId: string } }>(
    '/v1/device/recordings/:recordingId/download-url',
    {
      schema: {
        tags: ['device'],
        summary: 'a short-lived download URL (R5)',
        security,
        params: uuidParam('recordingId'),
        response: { 200: presignedSchema, ...errorResponses },
      },
    },
    async (req) => issueDownloadUrl(ctx, ownRecording(ctx, req, req.params.recordingId), deviceMetadata(req)),
  )
}
