import type { FastifyInstance } from 'fastify'
import type { DeviceCa } from '../../devices/ca.ts'
import { renewCertificate } from '../../devices/renew.ts'
import type { ApiContext } from '../context.ts'
import { authenticateDevice, deviceMetadata, devicePrincipal, deviceSource } from '../plugins/device-auth.ts'
import { deviceRecordingRoutes } from '../recordings/device-routes.ts'
import { errorResponses } from '../schemas.ts'

// Toy routes (R2, R4): the client certificate is the identity. One device authentication, with
// its per-certificate limits and folded refusals, covers every toy route: the certificate's
// renewal here and the recordings' toy routes registered inside this plugin.

export async function deviceRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts
  const auth = authenticateDevice(ctx)
  app.addHook('onRequest', auth)
  // the refusals counted since a block's first event are recorded before the API stops
  app.addHook('onClose', () => auth.flush())
  await app.register(deviceRecordingRoutes, { ctx })

  app.post<{ Body: { csr: string } }>(
    '/v1/device/certificate',
    {
      schema: {
        tags: ['device'],
        summary: "renew the toy's certificate from a CSR (R18)",
        security: [{ deviceCertificate: [] }],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['csr'],
          properties: {
            csr: { type: 'string', minLength: 100, maxLength: 16384, pattern: '^-----BEGIN CERTIFICATE REQUEST-----' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: { certPem: { type: 'string' }, serial: { type: 'string' }, caPem: { type: 'string' } },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const { deviceId, serial } = devicePrincipal(req)
      const meta = deviceMetadata(req)
      const renewed = await renewCertificate(
        {
          store: ctx.store,
          ca: ctx.ca as DeviceCa,
          config: ctx.config,
          actor: meta.actor!,
          credential: meta.credential,
          ...deviceSource(req),
          correlationId: req.id,
          now: ctx.now(),
          docs: ctx.docs,
        },
        deviceId,
        serial,
        req.body.csr,
      )
      await ctx.catchUp()
      return renewed // caPem: the trust bundle the toy keeps as its ca.crt (R18)
    },
  )
}
