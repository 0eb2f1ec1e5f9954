import { PassThrough } from 'node:stream'
import tls from 'node:tls'
import t from 'tap'
import { answerClientError } from '../../api/listen.ts'
import { buildTestApi, listenTestApi } from './helpers.ts'

// Requests Node's HTTP parser refuses never reach Fastify. Node answered them with a bare
// "400 Bad Request" (or 431), no body and none of the API's security headers; they get the one
// error format, {"error":{"code","message"}}, like every other refusal.

function rawRequest(port: number, ca: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => socket.write(request))
    let answer = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => (answer += d))
    socket.on('error', reject)
    socket.on('close', () => resolve(answer))
  })
}

t.test('malformed HTTP gets a coded JSON error with the security headers', async (t) => {
  const api = await buildTestApi(t)
  const server = await listenTestApi(t, api)
  const cases: Array<[string, string, number, string]> = [
    [
      'Content-Length and Transfer-Encoding together',
      'POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
      'KENNEL_ERR_VALIDATION',
    ],
    [
      'a space in a header name',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n',
      400,
      'KENNEL_ERR_VALIDATION',
    ],
    ['a request line that is no HTTP', 'GARBAGE\r\n\r\n', 400, 'KENNEL_ERR_VALIDATION'],
    [
      'a 20 KB header',
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
      'KENNEL_ERR_HEADERS_TOO_LARGE',
    ],
  ]
  for (const [what, request, status, code] of cases) {
    const answer = await rawRequest(server.port, server.caPem, request)
    const [head, body] = answer.split('\r\n\r\n') as [string, string]
    t.match(head, new RegExp(`^HTTP/1.1 ${status} `), `${what}: ${status}`)
    t.match(head, /\r\ncontent-type: application\/json/i)
    t.match(head, /\r\nx-content-type-options: nosniff/i, 'the security headers')
    t.match(JSON.parse(body), { error: { code, message: String } }, `${what}: ${code}`)
  }
  const healthy = await rawRequest(
    server.port,
    server.caPem,
    'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  )
  t.match(healthy, /^HTTP\/1.1 200 /, 'the API still answers')
})

t.test('a request that did not arrive in time is answered 408 in the same format', async (t) => {
  const socket = new PassThrough()
  let written = ''
  socket.on('data', (d: Buffer) => (written += d.toString()))
  answerClientError(Object.assign(new Error('timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket)
  await new Promise((resolve) => socket.once('end', resolve))
  t.match(written, /^HTTP\/1.1 408 Request Timeout\r\n/)
  t.match(JSON.parse(written.split('\r\n\r\n')[1]!), { error: { code: 'KENNEL_ERR_REQUEST_TIMEOUT' } })
})
