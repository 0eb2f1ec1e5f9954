import { execFile, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { buildTestApi, listenTestApi } from './helpers.ts'

// A body over the limit is refused with 413 and a JSON error as soon as its Content-Length is
// read, while the client is still sending it. With curl (which sends a body over 1 MB after
// `Expect: 100-continue`), about half of such uploads ended with "Send failure: Broken pipe"
// and no status: the server closed its socket with the unread body in it, the kernel reset the
// connection, and curl lost the 413 it had not read yet. The API's connections now linger
// (infra/net/linger.ts): every attempt gets its 413.

const run = promisify(execFile)
const curlSkip = ((): string | false => {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' })
    return false
  } catch {
    return 'curl is not installed'
  }
})()

const ATTEMPTS = 8

t.test(
  'curl uploading 30 MB to a route with a smaller limit gets the 413 and its JSON every time',
  { skip: curlSkip },
  async (t) => {
    const api = await buildTestApi(t)
    const server = await listenTestApi(t, api)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-early-refusal-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const caFile = path.join(dir, 'ca.pem')
    fs.writeFileSync(caFile, server.caPem)
    const body = path.join(dir, 'body.json')
    fs.writeFileSync(body, Buffer.alloc(30 * 1024 * 1024, 0x61))

    const statuses: string[] = []
    for (let i = 0; i < ATTEMPTS; i++) {
      const { stdout } = await run('curl', [
        '-s',
        '--cacert',
        caFile,
        '-o',
        path.join(dir, `reply-${i}`),
        '-w',
        '%{http_code}',
        '-X',
        'POST',
        '-H',
        'content-type: application/json',
        '--data-binary',
        `@${body}`,
        `https://localhost:${server.port}/v1/accounts`,
      ]).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }))
      statuses.push(stdout)
      if (stdout === '413')
        t.match(JSON.parse(fs.readFileSync(path.join(dir, `reply-${i}`), 'utf8')), {
          error: { code: 'KENNEL_ERR_PAYLOAD_TOO_LARGE' },
        })
    }
    t.same(
      statuses,
      Array(ATTEMPTS).fill('413'),
      'every upload was answered 413 (curl prints 000 or 100 when the connection was reset before it read the answer)',
    )
  },
)
