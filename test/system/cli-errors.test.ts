import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { errorCatalogue } from '../../infra/errors.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'

// Mistakes in how kennel is started or called get a coded error naming what to change, never
// "internal error" (exit 70) or silence.

const bin = path.resolve('bin/kennel.js')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-cli-errors-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

function kennel(
  args: string[],
  env: Record<string, string> = {},
  as: { uid?: number; gid?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      ...as,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: dir,
        USER: 'tester',
        KENNEL_ENV: 'test',
        KENNEL_DATA_DIR: dir,
        KENNEL_LOG_LEVEL: 'silent',
        ...env,
      },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('a port in use stops start-up with the variable and the address to change', async (t) => {
  const busy = net.createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => busy.close(() => resolve())))
  const port = String((busy.address() as net.AddressInfo).port)
  for (const variable of ['KENNEL_MQTT_PORT', 'KENNEL_API_PORT', 'KENNEL_METRICS_PORT']) {
    const run = await kennel(['start'], {
      KENNEL_MQTT_PORT: '0',
      KENNEL_API_PORT: '0',
      KENNEL_METRICS_PORT: '0',
      [variable]: port,
    })
    t.equal(run.code, errorCatalogue.KENNEL_ERR_CANNOT_LISTEN.exit, `${variable}: exit ${run.code}`)
    t.match(
      run.stderr,
      new RegExp(
        `^kennel: cannot listen for ${variable}: 127\\.0\\.0\\.1:${port} is already in use: stop what listens there or set ${variable} to a free port \\(0 = any free port\\) \\(KENNEL_ERR_CANNOT_LISTEN\\)$`,
        'm',
      ),
    )
    t.notMatch(run.stderr, /internal error/)
  }
})

t.test("an operations address that is not this machine's names KENNEL_METRICS_HOST", async (t) => {
  // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this machine
  const run = await kennel(['start'], {
    KENNEL_MQTT_PORT: '0',
    KENNEL_API_PORT: '0',
    KENNEL_METRICS_PORT: '0',
    KENNEL_METRICS_HOST: '192.0.2.1',
  })
  t.equal(run.code, errorCatalogue.KENNEL_ERR_CANNOT_LISTEN.exit)
  t.match(
    run.stderr,
    /^kennel: cannot listen for KENNEL_METRICS_PORT: 192\.0\.2\.1 is not an address of this machine: set KENNEL_METRICS_HOST to one of its addresses \(for KENNEL_METRICS_PORT\) \(KENNEL_ERR_CANNOT_LISTEN\)$/m,
  )
})

const ports = { KENNEL_MQTT_PORT: '0', KENNEL_API_PORT: '0', KENNEL_METRICS_PORT: '0' }

t.test(
  'a data directory kennel cannot write stops start-up naming the directory, the user and KENNEL_DATA_DIR',
  async (t) => {
    const locked = path.join(dir, 'locked')
    fs.mkdirSync(locked, { mode: 0o555 })
    fs.chmodSync(locked, 0o555)
    // root writes anywhere: run the child as nobody, as a container's non-root user would
    const root = process.getuid?.() === 0
    const as = root ? { uid: 65534, gid: 65534 } : {}
    for (const dataDir of [locked, path.join(locked, 'data')]) {
      const run = await kennel(['start'], { ...ports, KENNEL_DATA_DIR: dataDir, HOME: os.tmpdir() }, as)
      t.equal(run.code, errorCatalogue.KENNEL_ERR_DATA_DIR.exit, `${dataDir}: exit ${run.code} ${run.stderr}`)
      t.match(
        run.stderr,
        new RegExp(
          `^kennel: the data directory ${dataDir} is not writable by the user kennel runs as \\(uid ${root ? 65534 : process.getuid?.()}\\): give that user write access to it \\(chown, chmod\\) or set KENNEL_DATA_DIR to a directory it can write \\(KENNEL_ERR_DATA_DIR\\)$`,
          'm',
        ),
      )
    }
    const file = path.join(dir, 'not-a-dir')
    fs.writeFileSync(file, '')
    const run = await kennel(['start'], { ...ports, KENNEL_DATA_DIR: path.join(file, 'data') })
    t.equal(run.code, errorCatalogue.KENNEL_ERR_DATA_DIR.exit)
    t.match(
      run.stderr,
      /or one of its parents is a file, not a directory: set KENNEL_DATA_DIR to a directory \(KENNEL_ERR_DATA_DIR\)/,
    )
  },
)

t.test("a store of another environment names KENNEL_ENV and where this environment's store goes", async (t) => {
  const devDir = path.join(dir, 'dev-data')
  const store = await openEventStore(`sqlite:${path.join(devDir, 'events.sqlite')}`, { environment: 'development' })
  await store.close()
  const run = await kennel(['start'], { ...ports, KENNEL_DATA_DIR: devDir })
  t.equal(run.code, errorCatalogue.KENNEL_ERR_ENVIRONMENT_MISMATCH.exit)
  t.match(
    run.stderr,
    /^kennel: event store .*events\.sqlite was created by a development environment; refusing to open it as test: set KENNEL_ENV=development if this is a development deployment, or set KENNEL_DATA_DIR to the test environment's store; never share one store between environments \(R8\) \(KENNEL_ERR_ENVIRONMENT_MISMATCH\)$/m,
  )
  const listed = await kennel(['device', 'list'], {
    KENNEL_DATA_DIR: devDir,
    KENNEL_EVENTSTORE: `sqlite:${path.join(devDir, 'events.sqlite')}`,
  })
  t.match(
    listed.stderr,
    /set KENNEL_ENV=development .* or set KENNEL_EVENTSTORE to the test environment's store/,
    'the CLI too, naming KENNEL_EVENTSTORE when it is set',
  )
})

t.test('--out in a missing directory names the directory', async (t) => {
  const missing = path.join(dir, 'no-such-dir')
  for (const args of [
    ['ca', 'crl', '--out', path.join(missing, 'crl.pem')],
    ['audit', 'heads', '--out', path.join(missing, 'heads.json')],
  ]) {
    const run = await kennel(args)
    t.equal(
      run.code,
      errorCatalogue.KENNEL_ERR_NOT_FOUND.exit,
      `${args.slice(0, 2).join(' ')}: exit ${run.code} ${run.stderr}`,
    )
    t.match(
      run.stderr,
      `the directory ${missing} does not exist; create it or give --out a path in an existing directory (KENNEL_ERR_NOT_FOUND)`,
    )
    t.notOk(fs.existsSync(missing), 'nothing created')
  }
  fs.writeFileSync(path.join(dir, 'a-file'), '')
  const run = await kennel(['ca', 'crl', '--out', path.join(dir, 'a-file', 'crl.pem')])
  t.equal(run.code, errorCatalogue.KENNEL_ERR_NOT_FOUND.exit)
  t.match(run.stderr, `${path.join(dir, 'a-file')} is not a directory`)
})

t.test('events tail refuses an unknown --type with the known types, and takes a known one', async (t) => {
  const bogus = await kennel(['events', 'tail', '--type', 'DeviceConnected', 'Bogus'])
  t.equal(bogus.code, errorCatalogue.KENNEL_ERR_VALIDATION.exit, 'usage exit code')
  t.match(
    bogus.stderr,
    /^kennel: unknown event type Bogus \(--type\); known types: .*\bDeviceConnected\b.*\bTreeHeadSigned\b.* \(KENNEL_ERR_VALIDATION\)\n$/,
  )
  t.equal(bogus.stdout, '')
  const known = await kennel(['events', 'tail', '--type', 'DeviceConnected', 'CaCreated'])
  t.equal(known.code, 0, known.stderr)
})
