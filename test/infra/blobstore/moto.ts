import { spawn } from 'node:child_process'

// moto's S3 server (Python; `pip install moto[server]`), for what s3rver does not do: it refuses a
// conditional write (`If-None-Match: *`) of an existing key with 412, as S3 does. Like S3 it
// keeps a declared checksum, but it does not check it against the body. Started once per test
// file on loopback, port 0; absent, its tests are skipped with a reason.

interface T {
  teardown(fn: () => unknown): void
}

const STARTUP_DEADLINE_MS = 60_000

/** the endpoint of a running moto_server, or undefined when it is not installed */
export async function startMoto(t: T): Promise<string | undefined> {
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => child.kill())
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(
      () => reject(new Error(`moto_server did not report its port within ${STARTUP_DEADLINE_MS} ms: ${out}`)),
      STARTUP_DEADLINE_MS,
    )
    const read = (chunk: Buffer) => {
      out += chunk.toString()
      const m = /Running on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m) clearTimeout(timer), resolve(m[1])
    }
    child.stdout.on('data', read)
    child.stderr.on('data', read)
    child.once(
      'error',
      (err: NodeJS.ErrnoException) => (clearTimeout(timer), err.code === 'ENOENT' ? resolve(undefined) : reject(err)),
    )
    child.once(
      'exit',
      (code) => (
        clearTimeout(timer),
        code === 127 ? resolve(undefined) : reject(new Error(`moto_server exited (${code}): ${out}`))
      ),
    )
  })
}
