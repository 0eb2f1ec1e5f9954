import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { KennelError, type ErrorCode } from '../../infra/errors.ts'

// The one error format: {"error":{"code":"KENNEL_ERR_...","message":"..."}} with the catalogue's
// status (infra/errors.ts). Fastify's own errors are mapped to catalogue codes, including those it
// answers before any route runs (frameworkErrors); anything unexpected is logged and answered as
// KENNEL_ERR_INTERNAL without details.

const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'KENNEL_ERR_PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'KENNEL_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'KENNEL_ERR_VALIDATION',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'KENNEL_ERR_VALIDATION',
  FST_ERR_CTP_INVALID_JSON_BODY: 'KENNEL_ERR_VALIDATION',
  FST_ERR_VALIDATION: 'KENNEL_ERR_VALIDATION',
  FST_ERR_BAD_URL: 'KENNEL_ERR_VALIDATION',
  FST_ERR_MAX_PARAM_LENGTH: 'KENNEL_ERR_VALIDATION',
}

// Fastify's messages for these echo the raw path; the answer names the problem instead
const frameworkMessages: Record<string, string> = {
  FST_ERR_BAD_URL: 'invalid URL: broken percent-encoding',
  FST_ERR_MAX_PARAM_LENGTH: 'invalid URL: a path parameter is too long',
}

/** what a 503 asks the client to wait: a dropped database connection is replaced at the next query */
const UNAVAILABLE_RETRY_AFTER_SECONDS = 1

/** a file the API writes (a person's or household's key, a mail in the outbox, a recording) that
 * the machine cannot take: a fault of the service, like a database outage, not of the request.
 * It answered 500 "internal error"; it is a 503 the client may retry once an operator has made room. */
const STORAGE_FAULTS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'EMFILE', 'ENFILE'])

export function toKennelError(err: FastifyError | Error): KennelError {
  if (err instanceof KennelError) return err
  const fe = err as FastifyError
  if (fe.validation) return new KennelError('KENNEL_ERR_VALIDATION', `invalid request: ${fe.message}`)
  const mapped = fe.code ? fastifyCodes[fe.code] : undefined
  if (mapped) return new KennelError(mapped, frameworkMessages[fe.code] ?? fe.message)
  if (fe.code !== undefined && STORAGE_FAULTS.has(fe.code))
    return new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `the server cannot store data right now (${fe.code}); try again later`,
    )
  if (err instanceof SyntaxError || (fe.statusCode !== undefined && fe.statusCode >= 400 && fe.statusCode < 500)) {
    return new KennelError('KENNEL_ERR_VALIDATION', `invalid request: ${fe.message}`)
  }
  return new KennelError('KENNEL_ERR_INTERNAL', 'internal error')
}

function answer(err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const ke = toKennelError(err)
  if (ke.code === 'KENNEL_ERR_INTERNAL') req.log.error({ err }, 'unhandled error')
  else if (ke !== err && ke.code === 'KENNEL_ERR_UNAVAILABLE') req.log.error({ err }, 'storage fault')
  // a 503 (the event store unreachable or its connection lost) is worth retrying soon [RFC 9110 §10.2.3]
  const retryAfter =
    ke.details?.retryAfterSeconds ?? (ke.httpStatus === 503 ? UNAVAILABLE_RETRY_AFTER_SECONDS : undefined)
  if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter))
  if (ke.httpStatus === 401) void reply.header('www-authenticate', 'Bearer realm="kennel"')
  return reply.status(ke.httpStatus).send(ke.toJSON())
}

/** Fastify's `frameworkErrors` option: errors it answers while routing, before any hook or the
 * error handler (a URL with broken percent-encoding, an over-long path parameter) */
export function answerFrameworkError(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  void answer(err, req, reply)
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, req, reply) => answer(err as FastifyError, req, reply))
  app.setNotFoundHandler((req, reply) => {
    const ke = new KennelError('KENNEL_ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]!.slice(0, 200)}`)
    return reply.status(404).send(ke.toJSON())
  })
}
