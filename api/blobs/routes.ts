import type { FastifyInstance, FastifyRequest } from 'fastify'
import { isKennelError, KennelError } from '../../infra/errors.ts'
import type { LocalBlobStore, SignedParams } from '../../infra/blobstore/local.ts'
import { OBJECT_KEY_PATTERN, type BlobMethod, type BlobStat } from '../../infra/blobstore/port.ts'
import { errorResponses } from '../schemas.ts'
import { contentTypes, MAX_RECORDING_BYTES } from '../recordings/service.ts'

// The embedded blob store's signed URLs (R5, R12). No session or certificate: the URL's HMAC is
// the authorization, bound to one object, one method, one household, one size (and SHA-256, when
// declared), the credential it was issued to and an expiry. A forged or expired URL is refused
// before anything else and leaves no event; a genuine one is then put to `BlobUses` (the API's
// recordings context), which may still refuse it (R3) and records its use or refusal (R19).

const params = {
  type: 'object',
  additionalProperties: false,
  required: ['key'],
  properties: { key: { type: 'string', pattern: OBJECT_KEY_PATTERN } },
} as const
const query = {
  type: 'object',
  additionalProperties: false,
  required: ['h', 'ct', 'len', 'expires', 'sig'],
  properties: {
    h: { type: 'string', pattern: '^[A-Za-z0-9-]{1,64}$' },
    ct: { type: 'string', maxLength: 100 },
    len: { type: 'integer', minimum: 0, maximum: MAX_RECORDING_BYTES },
    sha: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    cred: { type: 'string', pattern: '^(cert:[0-9a-f]{1,64}|token:[0-9a-f-]{36})$' },
    expires: { type: 'integer', minimum: 0 },
    sig: { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$' },
  },
} as const

interface Q {
  h: string
  ct: string
  len: number
  sha?: string
  cred?: string
  expires: number
  sig: string
}
const signed = (q: Q): SignedParams => ({
  householdId: q.h,
  contentType: q.ct,
  bytes: q.len,
  sha256: q.sha ?? '',
  credential: q.cred ?? '',
  expires: q.expires,
  sig: q.sig,
})

/** one use of a genuine URL. `signature` identifies the URL (hashed before it is evented, R16);
 * `credential` is whom it was issued to */
export interface UrlUse {
  method: BlobMethod
  ip: string
  correlationId: string
  until: string
  signature: string
  credential: string
}

/** what the API does around the use of a genuine URL (api/recordings/url-uses.ts) */
export interface BlobUses {
  /** may the URL be used now? Throws the refusal. For a GET, gives the SHA-256 recorded at
   * completion, which the bytes must have to be served */
  admit(objectKey: string, use: UrlUse): { sha256: string | undefined }
  /** appended before the PUT is answered */
  uploaded(objectKey: string, use: UrlUse, stored: BlobStat): Promise<void>
  /** appended before the bytes are sent */
  downloaded(objectKey: string, use: UrlUse): Promise<void>
  refused(objectKey: string, use: UrlUse, refusal: KennelError): Promise<void>
}

const useOf = (req: FastifyRequest<{ Querystring: Q }>, method: BlobMethod): UrlUse => ({
  method,
  ip: req.ip,
  correlationId: req.id,
  until: new Date(req.query.expires * 1000).toISOString(),
  signature: req.query.sig,
  credential: req.query.cred ?? '',
})

/** a genuine URL's refusal is recorded before it is answered; failures of kennel itself are not refusals */
async function refusing<T>(uses: BlobUses | undefined, key: string, use: UrlUse, act: () => Promise<T>): Promise<T> {
  try {
    return await act()
  } catch (err) {
    if (uses && isKennelError(err) && err.httpStatus < 500) await uses.refused(key, use, err)
    throw err
  }
}

export async function blobRoutes(
  app: FastifyInstance,
  opts: { blobs: LocalBlobStore; uses?: BlobUses },
): Promise<void> {
  const { blobs, uses } = opts
  for (const type of contentTypes) {
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: MAX_RECORDING_BYTES }, (_req, body, done) =>
      done(null, body),
    )
  }

  app.put<{ Params: { key: string }; Querystring: Q; Body: Buffer }>(
    '/v1/blobs/:key',
    {
      bodyLimit: MAX_RECORDING_BYTES,
      schema: {
        tags: ['blobs'],
        summary: 'upload through a signed URL (embedded store); each URL writes once',
        params,
        querystring: query,
        response: { 204: { type: 'null' }, ...errorResponses },
      },
    },
    async (req, reply) => {
      const key = req.params.key
      const p = signed(req.query)
      blobs.verify('PUT', key, p)
      const use = useOf(req, 'PUT')
      const stored = await refusing(uses, key, use, async () => {
        uses?.admit(key, use)
        if (!Buffer.isBuffer(req.body))
          throw new KennelError(
            'KENNEL_ERR_UNSUPPORTED_MEDIA_TYPE',
            'send the recording bytes with the Content-Type the URL was issued for',
          )
        return blobs.receive(key, p, req.headers['content-type'], req.body)
      })
      await uses?.uploaded(key, use, stored)
      return reply.status(204).send()
    },
  )

  app.get<{ Params: { key: string }; Querystring: Q }>(
    '/v1/blobs/:key',
    {
      schema: {
        tags: ['blobs'],
        summary: 'download through a signed URL (embedded store)',
        params,
        querystring: query,
      },
    },
    async (req, reply) => {
      const key = req.params.key
      const p = signed(req.query)
      blobs.verify('GET', key, p)
      const use = useOf(req, 'GET')
      const { body, contentType } = await refusing(uses, key, use, async () =>
        blobs.send(key, p, uses?.admit(key, use).sha256),
      )
      await uses?.downloaded(key, use)
      return reply.header('content-type', contentType).header('content-disposition', 'attachment').send(body)
    },
  )
}
