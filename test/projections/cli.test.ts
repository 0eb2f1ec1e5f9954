import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import t from 'tap'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { appendAll, traffic } from './helpers.ts'

const run = promisify(execFile)
const bin = path.resolve('bin/kennel.js')

t.test('kennel projections rebuild, audit verify / prove / check-proof / heads / report end to end', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-cli-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const env = { ...process.env, KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir, KENNEL_AUDIT_HEAD_EVERY_EVENTS: '10', KENNEL_LOG_LEVEL: 'silent' }
  const kennel = (...args: string[]) => run(process.execPath, [bin, ...args], { env })
  const store = await openEventStore(`sqlite:${path.join(dir, 'events.sqlite')}`, { environment: 'test' })
  await appendAll(store, traffic(95))
  const [target] = await store.readAll({ after: 30, maxCount: 1 })
  await store.close()

  const rebuilt = await kennel('projections', 'rebuild')
  t.match(rebuilt.stderr, /rebuilt audit, security-monitor, devices, api-accounts, api-households, api-recordings up to position \d+/)
  t.match((await kennel('projections', 'rebuild', 'devices')).stderr, /rebuilt devices up to position \d+/, 'one read model by name')
  const unknown = await kennel('projections', 'rebuild', 'nope').catch((e: { code: number; stderr: string }) => e)
  t.match(unknown, { code: 66, stderr: /no projection named nope \(known: audit, security-monitor, devices/ })
  t.ok(fs.existsSync(path.join(dir, 'readmodels.sqlite')), 'read models beside the event store')
  t.equal(fs.statSync(path.join(dir, 'audit', 'signing-key.pem')).mode & 0o777, 0o600, 'the development signing key is private')

  t.match((await kennel('audit', 'verify')).stdout, /^ok: \d+ events, \d+ signed heads checked/)
  const proofFile = path.join(dir, 'proof.json')
  await kennel('audit', 'prove', target!.id, '--out', proofFile)
  const pub = path.join(dir, 'audit', 'signing-key.pub.pem')
  t.match((await kennel('audit', 'check-proof', proofFile, '--public-key', pub)).stdout, /^ok/)
  const proof = JSON.parse(fs.readFileSync(proofFile, 'utf8'))
  proof.event.data.size++
  fs.writeFileSync(proofFile, JSON.stringify(proof))
  const bad = await kennel('audit', 'check-proof', proofFile, '--public-key', pub).catch((e: { code: number; stderr: string }) => e)
  t.match(bad, { code: 1, stderr: /KENNEL_ERR_PROOF_INVALID/ }, 'an altered proof fails')

  const headsFile = path.join(dir, 'heads.json')
  await kennel('audit', 'heads', '--out', headsFile)
  const heads = JSON.parse(fs.readFileSync(headsFile, 'utf8'))
  t.ok(heads.heads.length >= 9 && heads.publicKey.includes('PUBLIC KEY'), 'heads export with the public key')

  const report = JSON.parse((await kennel('audit', 'report', '--credential', 'device:toy-0', '--since', '2000-01-01T00:00:00Z', '--until', '2100-01-01T00:00:00Z', '--json')).stdout)
  t.ok(report.actions.length > 0 && report.deviceIds.includes('toy-0'))
  const refused = await kennel('audit', 'report', '--credential', 'phone:1', '--since', '2000-01-01', '--until', '2001-01-01').catch((e: { code: number; stderr: string }) => e)
  t.match(refused, { code: 64, stderr: /KENNEL_ERR_CREDENTIAL_INVALID/ })

  const db = new Database(path.join(dir, 'events.sqlite'))
  db.exec('DROP TRIGGER events_are_immutable')
  db.prepare(`UPDATE events SET data = json_set(data, '$.size', 0) WHERE position = 17`).run()
  db.close()
  const tampered = await kennel('audit', 'verify').catch((e: { code: number; stderr: string }) => e)
  t.match(tampered, { code: 1, stderr: /position 17.*KENNEL_ERR_AUDIT_TAMPERED/ }, 'an edit is named and exits non-zero')
})
