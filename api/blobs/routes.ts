import type { FastifyInstance } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import type { LocalBlobStore, SignedParams } from '../../infra/blobstore/local.ts'
import { OBJECT_KEY_PATTERN } from '../../infra/blobstore/port.ts'
import { errorResponses } from '../schemas.ts'
import { contentTypes, MAX_RECORDING_BYTES } from '../recordings/service.ts'

// The embedded blob store's signed URLs (R5, R12). No session or certificate: the URL's HMAC is
// the authorization, bound to one object, one method, one household, one size and an expiry.

const params = { type: 'object', additionalProperties: false, required: ['key'], properties: { key: { type: 'string', pattern: OBJECT_KEY_PATTERN } } } as const
const query = {
  type: 'object',
  additionalProperties: false,
  required: ['h', 'ct', 'len', 'expires', 'sig'],
  properties: {
    h: { type: 'string', pattern: '^[A-Za-z0-9-]{1,64}$' },
    ct: { type: 'string', maxLength: 100 },
    len: { type: 'integer', minimum: 0, maximum: MAX_RECORDING_BYTES },
    expires: { type: 'integer', minimum: 0 },
    sig: { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$' },
  },
} as const

interface Q { h: string; ct: string; len: number; expires: number; sig: string }
const signed = (q: Q): SignedParams => ({ householdId: q.h, contentType: q.ct, bytes: q.len, expires: q.expires, sig: q.sig })

/** appends the use of a download URL; the bytes are sent only once it resolves. `signature`
 * identifies the URL used (hashed before it is evented, R16) */
export type RecordDownload = (objectKey: string, use: { ip: string; correlationId: string; until: string; signature: string }) => Promise<void>

export async function blobRoutes(app: FastifyInstance, opts: { blobs: LocalBlobStore; recordDownload?: RecordDownload }): Promise<void> {
  const { blobs, recordDownload } = opts
  for (const type of contentTypes) {
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: MAX_RECORDING_BYTES }, (_req, body, done) => done(null, body))
  }

  app.put<{ Params: { key: string }; Querystring: Q; Body: Buffer }>('/v1/blobs/:key', {
    bodyLimit: MAX_RECORDING_BYTES,
    schema: { tags: ['blobs'], summary: 'upload through a signed URL (embedded store)', params, querystring: query, response: { 204: { type: 'null' }, ...errorResponses } },
  }, async (req, reply) => {
    if (!Buffer.isBuffer(req.body)) throw new KennelError('KENNEL_ERR_UNSUPPORTED_MEDIA_TYPE', 'send the recording bytes with the Content-Type the URL was issued for')
    await blobs.receive(req.params.key, signed(req.query), req.headers['content-type'], req.body)
    return reply.status(204).send()
  })

  app.get<{ Params: { key: string }; Querystring: Q }>('/v1/blobs/:key', {
    schema: { tags: ['blobs'], summary: 'download through a signed URL (embedded store)', params, querystring: query },
  }, async (req, reply) => {
    const { body, contentType } = await blobs.send(req.params.key, signed(req.query))
    await recordDownload?.(req.params.key, { ip: req.ip, correlationId: req.id, until: new Date(req.query.expires * 1000).toISOString(), signature: req.query.sig })
    return reply.header('content-type', contentType).header('content-disposition', 'attachment').send(body)
  })
}
