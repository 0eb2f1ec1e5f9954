import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import t, { type Test } from 'tap'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { appendAll, traffic } from './helpers.ts'

const run = promisify(execFile)
const bin = path.resolve('bin/kennel.js')

t.test('kennel projections rebuild, audit verify / prove / check-proof / heads / report end to end', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-cli-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const env = {
    ...process.env,
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_AUDIT_HEAD_EVERY_EVENTS: '10',
    KENNEL_LOG_LEVEL: 'silent',
  }
  const kennel = (...args: string[]) => run(process.execPath, [bin, ...args], { env })
  const store = await openEventStore(`sqlite:${path.join(dir, 'events.sqlite')}`, { environment: 'test' })
  await appendAll(store, traffic(95))
  const [target] = await store.readAll({ after: 30, maxCount: 1 })
  await store.close()

  const rebuilt = await kennel('projections', 'rebuild')
  t.match(
    rebuilt.stderr,
    /rebuilt audit, security-monitor, devices, api-accounts, api-households, api-recordings up to position \d+/,
  )
  t.match(
    (await kennel('projections', 'rebuild', 'devices')).stderr,
    /rebuilt devices up to position \d+/,
    'one read model by name',
  )
  const unknown = await kennel('projections', 'rebuild', 'nope').catch((e: { code: number; stderr: string }) => e)
  t.match(unknown, { code: 66, stderr: /no projection named nope \(known: audit, security-monitor, devices/ })
  t.ok(fs.existsSync(path.join(dir, 'readmodels.sqlite')), 'read models beside the event store')
  t.equal(
    fs.statSync(path.join(dir, 'audit', 'signing-key.pem')).mode & 0o777,
    0o600,
    'the development signing key is private',
  )

  t.match((await kennel('audit', 'verify')).stdout, /^ok: \d+ events, \d+ signed heads checked/)
  const proofFile = path.join(dir, 'proof.json')
  await kennel('audit', 'prove', target!.id, '--out', proofFile)
  const pub = path.join(dir, 'audit', 'signing-key.pub.pem')
  t.match((await kennel('audit', 'check-proof', proofFile, '--public-key', pub)).stdout, /^ok/)
  const proof = JSON.parse(fs.readFileSync(proofFile, 'utf8'))
  proof.event.data.size++
  fs.writeFileSync(proofFile, JSON.stringify(proof))
  const bad = await kennel('audit', 'check-proof', proofFile, '--public-key', pub).catch(
    (e: { code: number; stderr: string }) => e,
  )
  t.match(bad, { code: 1, stderr: /KENNEL_ERR_PROOF_INVALID/ }, 'an altered proof fails')

  const headsFile = path.join(dir, 'heads.json')
  await kennel('audit', 'heads', '--out', headsFile)
  const heads = JSON.parse(fs.readFileSync(headsFile, 'utf8'))
  t.ok(heads.heads.length >= 9 && heads.publicKey.includes('PUBLIC KEY'), 'heads export with the public key')

  const report = JSON.parse(
    (
      await kennel(
        'audit',
        'report',
        '--credential',
        'device:toy-0',
        '--since',
        '2000-01-01T00:00:00Z',
        '--until',
        '2100-01-01T00:00:00Z',
        '--json',
      )
    ).stdout,
  )
  t.ok(report.actions.length > 0 && report.deviceIds.includes('toy-0'))
  const refused = await kennel(
    'audit',
    'report',
    '--credential',
    'phone:1',
    '--since',
    '2000-01-01',
    '--until',
    '2001-01-01',
  ).catch((e: { code: number; stderr: string }) => e)
  t.match(refused, { code: 64, stderr: /KENNEL_ERR_CREDENTIAL_INVALID/ })

  const db = new Database(path.join(dir, 'events.sqlite'))
  db.exec('DROP TRIGGER events_are_immutable')
  db.prepare(`UPDATE events SET data = json_set(data, '$.size', 0) WHERE position = 17`).run()
  db.close()
  const tampered = await kennel('audit', 'verify').catch((e: { code: number; stderr: string }) => e)
  t.match(
    tampered,
    { code: 1, stderr: /position 17.*KENNEL_ERR_AUDIT_TAMPERED/ },
    'an edit is named and exits non-zero',
  )
})

/** kennel on an empty data dir; each run gives its exit code, stdout and stderr, succeeding or not */
function cliRunner(t: Test) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-cli-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const env = {
    ...process.env,
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_AUDIT_HEAD_EVERY_EVENTS: '7',
    KENNEL_LOG_LEVEL: 'silent',
  }
  const kennel = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    run(process.execPath, [bin, ...args], { env }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    )
  return { dir, kennel }
}

/** cliRunner on a store of 40 events with signed heads */
async function cliSandbox(t: Test) {
  const { dir, kennel } = cliRunner(t)
  const store = await openEventStore(`sqlite:${path.join(dir, 'events.sqlite')}`, { environment: 'test' })
  await appendAll(store, traffic(40))
  const [target] = await store.readAll({ after: 19, maxCount: 1 })
  await store.close()
  t.equal((await kennel('projections', 'rebuild')).code, 0, 'rebuilt, signing heads with a new development key')
  const headPosition = async (): Promise<number> => {
    const s = await openEventStore(`sqlite:${path.join(dir, 'events.sqlite')}`, { environment: 'test' })
    try {
      return await s.headPosition()
    } finally {
      await s.close()
    }
  }
  return {
    dir,
    kennel,
    target: target!,
    headPosition,
    key: path.join(dir, 'audit', 'signing-key.pem'),
    pub: path.join(dir, 'audit', 'signing-key.pub.pem'),
  }
}

t.test(
  'a read-only audit command never creates an audit signing key: without one it exits 78 and appends nothing',
  async (t) => {
    const { dir, kennel, target, headPosition, key, pub } = await cliSandbox(t)
    const exported = JSON.parse((await kennel('audit', 'heads')).stdout)
    t.equal(exported.publicKey, fs.readFileSync(pub, 'utf8'), 'heads export the public key of the key that signed them')
    const moved = path.join(dir, 'kept-signing-key.pem')
    fs.renameSync(key, moved)
    const before = await headPosition()
    const commands = [
      ['audit', 'heads'],
      ['audit', 'prove', target.id],
      ['audit', 'consistency', '--from', '7'],
      [
        'audit',
        'report',
        '--credential',
        'device:toy-0',
        '--since',
        '2000-01-01T00:00:00Z',
        '--until',
        '2100-01-01T00:00:00Z',
      ],
      ['audit', 'verify'],
    ]
    for (const args of commands) {
      const r = await kennel(...args)
      t.match(
        r,
        {
          code: 78,
          stdout: '',
          stderr: /^kennel: no audit (signing )?key.*KENNEL_AUDIT_KEY.*\(KENNEL_ERR_CONFIG\)\n$/,
        },
        `${args.join(' ')} refuses`,
      )
      t.notOk(fs.existsSync(key), `${args.join(' ')} created no signing key`)
    }
    t.equal(await headPosition(), before, 'no head, report or other event was appended')
    t.equal(
      (await kennel('audit', 'verify', '--public-key', pub)).code,
      0,
      'the old heads still verify with the old public key',
    )
    fs.renameSync(moved, key)
    t.match(await kennel('audit', 'verify'), { code: 0, stdout: /^ok: / }, 'and with the restored key')
  },
)

t.test('a file that cannot be read or written is a coded error naming it, not an internal error', async (t) => {
  const { dir, kennel, target, pub } = await cliSandbox(t)
  const proofFile = path.join(dir, 'proof.json')
  t.equal((await kennel('audit', 'prove', target.id, '--out', proofFile)).code, 0)
  const missing = path.join(dir, 'nokey.pem')
  const nowhere = path.join(dir, 'no-such-dir', 'x.json')
  const cases: Array<[string[], number, RegExp]> = [
    [
      ['audit', 'check-proof', proofFile, '--public-key', missing],
      66,
      /^kennel: cannot read the public key .*nokey\.pem: no such file or directory \(KENNEL_ERR_NOT_FOUND\)\n$/,
    ],
    [
      ['audit', 'check-proof', proofFile, '--public-key', dir],
      64,
      /^kennel: cannot read the public key .*: .*directory \(KENNEL_ERR_VALIDATION\)\n$/,
    ],
    [
      ['audit', 'check-proof', path.join(dir, 'nope.json'), '--public-key', pub],
      66,
      /^kennel: cannot read the proof .*nope\.json: no such file or directory \(KENNEL_ERR_NOT_FOUND\)\n$/,
    ],
    [
      ['audit', 'verify', '--public-key', missing],
      66,
      /^kennel: cannot read the public key .*nokey\.pem.*\(KENNEL_ERR_NOT_FOUND\)\n$/,
    ],
    [
      ['audit', 'heads', '--out', nowhere],
      66,
      /^kennel: cannot write .*no-such-dir\/x\.json: the directory .*no-such-dir does not exist; create it or give --out a path in an existing directory \(KENNEL_ERR_NOT_FOUND\)\n$/,
    ],
    [
      ['audit', 'prove', target.id, '--out', nowhere],
      66,
      /^kennel: cannot write .*no-such-dir\/x\.json: the directory .*no-such-dir does not exist; create it or give --out a path in an existing directory \(KENNEL_ERR_NOT_FOUND\)\n$/,
    ],
  ]
  for (const [args, code, stderr] of cases) t.match(await kennel(...args), { code, stdout: '', stderr }, args.join(' '))
  t.notOk(fs.existsSync(path.dirname(nowhere)), 'nothing was created in place of the missing directory')
  t.match(
    await kennel('audit', 'check-proof', proofFile, '--public-key', pub),
    { code: 0, stdout: /^ok/ },
    'the files that exist still work',
  )
})

t.test("commander's usage errors exit 64 with its message; --help exits 0", async (t) => {
  const { dir, kennel } = cliRunner(t)
  const usage: Array<[string[], RegExp]> = [
    [['audit', 'consistency'], /^error: required option '--from <size>' not specified/],
    [
      ['audit', 'check-proof', path.join(dir, 'proof.json')],
      /^error: required option '--public-key <pem>' not specified/,
    ],
    [['audit', 'verify', '--bogus'], /^error: unknown option '--bogus'/],
    [['nosuch'], /^error: unknown command 'nosuch'/],
    [['audit', 'prove'], /^error: missing required argument 'eventId'/],
  ]
  for (const [args, stderr] of usage)
    t.match(await kennel(...args), { code: 64, stdout: '', stderr }, args.join(' ') || '(no arguments)')
  for (const args of [['--help'], ['audit', '--help'], ['audit', 'consistency', '--help'], ['help', 'audit']]) {
    t.match(await kennel(...args), { code: 0, stdout: /^Usage: kennel/, stderr: '' }, args.join(' '))
  }
})
