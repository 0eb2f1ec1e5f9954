import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { errorCatalogue } from '../../infra/errors.ts'

// Mistakes in how kennel is started or called get a coded error naming what to change, never
// "internal error" (exit 70) or silence.

const bin = path.resolve('bin/kennel.js')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-cli-errors-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

function kennel(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH ?? '', HOME: dir, USER: 'tester', KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir, KENNEL_LOG_LEVEL: 'silent', ...env } })
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
    const run = await kennel(['start'], { KENNEL_MQTT_PORT: '0', KENNEL_API_PORT: '0', KENNEL_METRICS_PORT: '0', [variable]: port })
    t.equal(run.code, errorCatalogue.KENNEL_ERR_CANNOT_LISTEN.exit, `${variable}: exit ${run.code}`)
    t.match(run.stderr, new RegExp(`^kennel: cannot listen for ${variable}: 127\\.0\\.0\\.1:${port} is already in use: stop what listens there or set ${variable} to a free port \\(0 = any free port\\) \\(KENNEL_ERR_CANNOT_LISTEN\\)$`, 'm'))
    t.notMatch(run.stderr, /internal error/)
  }
})

t.test('--out in a missing directory names the directory', async (t) => {
  const missing = path.join(dir, 'no-such-dir')
  for (const args of [['ca', 'crl', '--out', path.join(missing, 'crl.pem')], ['audit', 'heads', '--out', path.join(missing, 'heads.json')]]) {
    const run = await kennel(args)
    t.equal(run.code, errorCatalogue.KENNEL_ERR_NOT_FOUND.exit, `${args.slice(0, 2).join(' ')}: exit ${run.code} ${run.stderr}`)
    t.match(run.stderr, `the directory ${missing} does not exist; create it or give --out a path in an existing directory (KENNEL_ERR_NOT_FOUND)`)
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
  t.match(bogus.stderr, /^kennel: unknown event type Bogus \(--type\); known types: .*\bDeviceConnected\b.*\bTreeHeadSigned\b.* \(KENNEL_ERR_VALIDATION\)\n$/)
  t.equal(bogus.stdout, '')
  const known = await kennel(['events', 'tail', '--type', 'DeviceConnected', 'CaCreated'])
  t.equal(known.code, 0, known.stderr)
})
