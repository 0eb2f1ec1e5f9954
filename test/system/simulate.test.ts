import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { loadDeviceCa } from '../../devices/ca.ts'
import { mintFleet } from '../../devices/simulator/fleet.ts'
import { loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { kennelEnv, startKennelChild } from './kennel-child.ts'

// `kennel simulate` against a running `kennel start`: toys minted by the development CA, each on
// its own mTLS connection, telemetry at a rate, recordings from paired toys; the report says
// what happened and the store agrees.

const bin = path.resolve(import.meta.dirname, '../../bin/kennel.js')
const run = promisify(execFile)

t.test('a fleet runs against kennel start, and the store holds what the report counts', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-simulate-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const env = kennelEnv(dir)
  const kennel = await startKennelChild(t, env)
  const args = [
    'simulate',
    '--toys',
    '4',
    '--rate',
    '40',
    '--duration',
    '2',
    '--paired',
    '2',
    '--recordings-per-minute',
    '120',
    '--recording-bytes',
    '2048',
    '--broker',
    `mqtts://localhost:${kennel.mqttPort}`,
    '--api',
    `https://localhost:${kennel.apiPort}`,
    '--json',
  ]
  const { stdout } = await run(process.execPath, [bin, ...args], { env, timeout: 120_000 })
  const report = JSON.parse(stdout.trim().split('\n').at(-1)!)
  t.match(
    report,
    { toys: 4, connected: 4, qos: 1, unacknowledged: 0, recordings: { paired: 2, failed: 0 } },
    'every toy connected and every publish was acknowledged',
  )
  t.ok(report.published > 20, `${report.published} published at 40/s for 2 s`)
  t.equal(report.acknowledged, report.published)
  t.ok(report.recordings.uploaded >= 1, `${report.recordings.uploaded} recordings uploaded`)
  t.equal(await kennel.stop(), 0)

  const config = loadConfig(env)
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  t.teardown(() => store.close())
  const fleet = JSON.parse(fs.readFileSync(path.join(dir, 'simulator', 'fleet.json'), 'utf8')) as {
    toys: Array<{ id: string; paired?: boolean }>
  }
  t.equal(fleet.toys.length, 4, 'the fleet is kept for the next run')
  t.equal(fs.statSync(path.join(dir, 'simulator', 'fleet.json')).mode & 0o077, 0, 'and its keys are private (0600)')
  const ids = new Set(fleet.toys.map((toy) => toy.id))
  const accepted = (await store.readAll({ filter: { types: ['PublishAccepted'] } })).filter((e) =>
    ids.has((e.data as { deviceId: string }).deviceId),
  )
  t.equal(accepted.length, report.acknowledged, 'one PublishAccepted per acknowledged publish')
  const stored = await store.readAll({ filter: { types: ['RecordingStored'] } })
  t.equal(stored.length, report.recordings.uploaded, 'one RecordingStored per recording uploaded')
  t.equal(fleet.toys.filter((toy) => toy.paired).length, 2, 'two toys paired')
})

t.test('bad input is refused with a coded error, and production never mints toys', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-simulate-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const env = kennelEnv(dir)
  const bad = await run(process.execPath, [bin, 'simulate', '--toys', '0'], { env }).catch(
    (err: { code: number; stderr: string }) => err,
  )
  t.match(bad, { code: 64, stderr: /--toys must be a number from 1/ })
  const badUrl = await run(process.execPath, [bin, 'simulate', '--broker', 'http://x'], { env }).catch(
    (err: { code: number; stderr: string }) => err,
  )
  t.match(badUrl, { code: 64, stderr: /--broker must be a mqtts:\/\/ URL/ })

  const config = { ...loadConfig(env), env: 'production' as const }
  const store = await openEventStore(loadConfig(env).eventStoreUrl, { environment: 'test' })
  t.teardown(() => store.close())
  const ca = await loadDeviceCa(loadConfig(env))
  await t.rejects(mintFleet({ config, store, ca, actor: 'cli:test' }, 2), { code: 'KENNEL_ERR_DEVELOPMENT_MATERIAL' })
  t.same(await store.readAll({ filter: { types: ['DeviceEnrolled'] } }), [], 'no toy was enrolled')
  t.notOk(fs.existsSync(path.join(dir, 'simulator')), 'no credentials were written')
})
