import pino, { type DestinationStream, type Logger } from 'pino'

export type { Logger }

// Structured logs on stdout (pino). Key material never reaches a logger: the redact paths are a
// second line of defence for objects that carry one by mistake.
//
// A presigned URL is a bearer capability (R5): whoever reads it in a log can use it until it
// expires. Request URLs are therefore logged without their query string, and every line is
// scrubbed just before it is written, whatever logged it (Fastify, the broker, an SDK error):
// query strings after a path, and the signing parameters of the embedded store (`sig`) and of
// S3 (`X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`) wherever they appear.

const SIGNING = 'sig|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token'
/** `/path?a=b…`: everything after the `?` of a path that is followed by a parameter */
const QUERY_AFTER_PATH = /(\/[^\s"'?#\\]*)\?[^\s"'#\\]*=[^\s"'#\\]*/g
/** `sig=…`, `X-Amz-Signature=…` outside a URL (a header, a message), name and value */
const SIGNING_PARAMETER = new RegExp(`\\b(?:${SIGNING})=[^&\\s"'\\\\]*`, 'gi')
/** `"sig":"…"`: a parsed query string logged as an object */
const SIGNING_FIELD = new RegExp(`"(${SIGNING})":"(?:[^"\\\\]|\\\\.)*"`, 'gi')
/** the S3 parameter names themselves, which say that a signature was there */
const AMZ_SIGNING_NAME = /X-Amz-(?:Signature|Credential|Security-Token)/gi

const REDACTED = '[redacted]'

/** one serialised log line, with no query string or signing parameter left in it */
export function scrubLogLine(line: string): string {
  return line
    .replace(QUERY_AFTER_PATH, `$1?${REDACTED}`)
    .replace(SIGNING_PARAMETER, REDACTED)
    .replace(SIGNING_FIELD, `"$1":"${REDACTED}"`)
    .replace(AMZ_SIGNING_NAME, `X-Amz-${REDACTED}`)
}

const withoutQuery = (url: unknown): unknown =>
  typeof url === 'string' && url.includes('?') ? `${url.slice(0, url.indexOf('?'))}?${REDACTED}` : url

interface LoggedRequest {
  method?: string
  url?: string
  host?: string
  ip?: string
  socket?: { remotePort?: number }
}

export function createLogger(level: string, name = 'kennel', destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name,
    level,
    redact: {
      paths: [
        '*.privateKey',
        '*.key',
        '*.password',
        '*.token',
        '*.claimCode',
        'privateKey',
        'password',
        'token',
        'claimCode',
        'req.headers.authorization',
      ],
      censor: '[redacted]',
    },
    // Fastify logs each request with this serialiser (it takes the logger's own over its default)
    serializers: {
      req: (req: LoggedRequest) => ({
        method: req.method,
        url: withoutQuery(req.url),
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort,
      }),
    },
    hooks: { streamWrite: scrubLogLine },
  }
  return destination ? pino(options, destination) : pino(options)
}
