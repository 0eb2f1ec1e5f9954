import t from 'tap'
import { createLogger, scrubLogLine } from '../../infra/log.ts'

// R5: a presigned URL in a log is a capability handed to whoever reads the log. Whatever logs it
// (a request log, a message, an error, an object), no line keeps its query or its signature.

const s3Url =
  'https://recordings.s3.eu-west-1.amazonaws.com/rec-0123456789abcdef0123456789abcdef01234567?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261205%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20261205T120000Z&X-Amz-Expires=300&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0&X-Amz-SignedHeaders=host&x-id=GetObject'
const blobUrl =
  'https://kennel.toys.example/v1/blobs/rec-0123456789abcdef0123456789abcdef01234567?h=7d8c&ct=&len=0&cred=cert%3Aab12&expires=1796498648&sig=tQYnKLgAQvdIiQMZBUQ1-izoObBGbHwtrb70l9sjzZE'
const secrets = [
  'sig=',
  'tQYnKLgAQvdIiQMZBUQ1',
  'X-Amz-Signature',
  'X-Amz-Credential',
  'X-Amz-Security-Token',
  'AKIAEXAMPLE',
  'FwoGZXIvYXdzEXAMPLE',
  '0f1e2d3c4b5a6978',
]

function capture() {
  const lines: string[] = []
  const log = createLogger('trace', 'kennel', { write: (line: string) => void lines.push(line) })
  return { log, lines }
}

t.test('every way a signed URL can reach a logger leaves no query and no signature in the line', async (t) => {
  const { log, lines } = capture()
  log.info(
    {
      req: {
        method: 'GET',
        url: new URL(blobUrl).pathname + new URL(blobUrl).search,
        ip: '127.0.0.1',
        host: 'kennel.toys.example',
      },
    },
    'incoming request',
  )
  log.info(`issued ${s3Url}`)
  log.info({ url: blobUrl, nested: { urls: [s3Url] } }, 'an object carrying URLs')
  log.error({ err: new Error(`fetch failed for ${s3Url}`) }, 'an SDK error')
  log.warn(
    {
      query: { h: '7d8c', sig: 'tQYnKLgAQvdIiQMZBUQ1-izoObBGbHwtrb70l9sjzZE' },
      headers: { 'X-Amz-Credential': 'AKIAEXAMPLE/20261205' },
    },
    'a parsed query and headers',
  )
  log.child({ component: 'api' }).info('child loggers too: %s', blobUrl)
  t.equal(lines.length, 6)
  for (const line of lines) {
    for (const s of secrets) t.notOk(line.includes(s), `${JSON.parse(line).msg}: no ${s}`)
    t.doesNotThrow(() => JSON.parse(line), 'the line is still JSON')
  }
  t.match(
    JSON.parse(lines[0]!).req,
    { method: 'GET', url: '/v1/blobs/rec-0123456789abcdef0123456789abcdef01234567?[redacted]' },
    'a request is logged by its path',
  )
  t.match(
    JSON.parse(lines[1]!).msg,
    'https://recordings.s3.eu-west-1.amazonaws.com/rec-0123456789abcdef0123456789abcdef01234567?[redacted]',
  )
})

t.test('a request is logged without any query string, whatever its shape', async (t) => {
  const { log, lines } = capture()
  log.info(
    { req: { method: 'GET', url: '/v1/blobs/rec-0123456789abcdef0123456789abcdef01234567?an-opaque-capability' } },
    'incoming request',
  )
  t.equal(JSON.parse(lines[0]!).req.url, '/v1/blobs/rec-0123456789abcdef0123456789abcdef01234567?[redacted]')
})

t.test('lines without a signed URL are left as they are', async (t) => {
  for (const line of [
    '{"msg":"HTTPS API listening","port":8443}',
    '{"msg":"why? because","a":"b=c"}',
    '{"msg":"topic toys/toy-1/inbox/recordings"}',
    '{"signature":"kept","sigma":"kept"}',
  ]) {
    t.equal(scrubLogLine(line), line)
  }
})
