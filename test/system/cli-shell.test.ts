import { execFile, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { appendAll, traffic } from '../projections/helpers.ts'

// What an operator's shell and scripts rely on: --version, completion generated from the
// commands themselves, and --json on every command that reads.

const run = promisify(execFile)
const bin = path.resolve('bin/kennel.js')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-cli-shell-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const env = {
  PATH: process.env.PATH ?? '',
  HOME: dir,
  USER: 'tester',
  KENNEL_ENV: 'test',
  KENNEL_DATA_DIR: dir,
  KENNEL_AUDIT_HEAD_EVERY_EVENTS: '10',
  KENNEL_LOG_LEVEL: 'silent',
}
const kennel = (...args: string[]) => run(process.execPath, [bin, ...args], { env })

t.test('--version and -V print the package version and exit 0', async (t) => {
  const { version } = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string }
  t.equal((await kennel('--version')).stdout, `${version}\n`)
  t.equal((await kennel('-V')).stdout, `${version}\n`)
})

/** what bash completes for the words typed so far (the last one being completed) */
function bashComplete(script: string, words: string[]): string[] {
  const array = words.map((w) => `'${w}'`).join(' ')
  const out = execFileSync(
    'bash',
    [
      '-c',
      `${script}\nCOMP_WORDS=(${array}); COMP_CWORD=${words.length - 1}; _kennel_complete; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { cwd: dir, encoding: 'utf8' },
  )
  return out.split('\n').filter(Boolean).sort()
}

t.test('bash completion is generated from the commands and completes paths, options and files', async (t) => {
  const script = (await kennel('completion', 'bash')).stdout
  t.same(bashComplete(script, ['kennel', 'au']), ['audit'])
  t.same(bashComplete(script, ['kennel', 'audit', 'ver']), ['verify'])
  t.same(bashComplete(script, ['kennel', 'audit', 'verify', '--']), ['--help', '--json', '--public-key'])
  t.same(
    bashComplete(script, ['kennel', 'device', 'list', '--j']),
    ['--json'],
    'options of the command typed, not its parent',
  )
  t.same(bashComplete(script, ['kennel', 'completion', '']), ['--help', 'bash', 'zsh'], 'argument choices')
  t.same(bashComplete(script, ['kennel', '--ver']), ['--version'])
  fs.writeFileSync(path.join(dir, 'proof-1.json'), '{}')
  t.same(
    bashComplete(script, ['kennel', 'audit', 'check-proof', '--public-key', 'proof-']),
    ['proof-1.json'],
    'a value after an option is a file name',
  )
  t.same(
    bashComplete(script, ['kennel', '--json', 'dev']),
    ['device'],
    'options before the command do not count as command words',
  )
})

const zsh = (() => {
  try {
    execFileSync('zsh', ['-c', 'true'])
    return true
  } catch {
    return false
  }
})()

t.test('zsh completion registers itself for kennel', async (t) => {
  const script = (await kennel('completion', 'zsh')).stdout
  t.match(script, /^#compdef kennel\n/)
  t.match(script, /compdef _kennel_complete kennel/)
  t.match(script, /' audit verify'\) opts='--public-key --json --help'/)
})

t.test('zsh accepts the script', { skip: zsh ? false : 'zsh is not installed on this machine' }, async (t) => {
  execFileSync('zsh', ['-n', '-c', (await kennel('completion', 'zsh')).stdout])
  t.pass('zsh -n')
})

t.test('an unknown shell is a usage error listing the choices', async (t) => {
  const err = await kennel('completion', 'fish').catch((e: { code: number; stderr: string }) => e)
  t.match(err, { code: 64, stderr: /Allowed choices are bash, zsh/ })
})

t.test('every command that reads takes --json and prints JSON', async (t) => {
  const store = await openEventStore(`sqlite:${path.join(dir, 'events.sqlite')}`, { environment: 'test' })
  await appendAll(store, traffic(40))
  const [target] = await store.readAll({ after: 5, maxCount: 1 })
  await store.close()
  await kennel('device', 'enroll', 'toy-json', '--out', path.join(dir, 'toy-json'))
  await kennel('projections', 'rebuild')
  const proofFile = path.join(dir, 'proof.json')
  await kennel('audit', 'prove', target!.id, '--out', proofFile)
  const pub = path.join(dir, 'audit', 'signing-key.pub.pem')
  const reading = [
    ['events', 'tail', '-n', '3'],
    ['device', 'list'],
    ['ca', 'cert'],
    ['audit', 'verify'],
    ['audit', 'heads'],
    ['audit', 'prove', target!.id],
    ['audit', 'consistency', '--from', '10', '--to', '20'],
    ['audit', 'check-proof', proofFile, '--public-key', pub],
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
    ['projections', 'status'],
  ]
  for (const args of reading) {
    const { stdout } = await kennel(...args, '--json')
    t.ok(stdout.length > 0, `${args.slice(0, 2).join(' ')} prints something`)
    // one JSON document, or JSON lines
    const docs = (() => {
      try {
        return [JSON.parse(stdout)]
      } catch {
        return stdout
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l))
      }
    })()
    t.ok(docs.length > 0 && docs.every((d) => typeof d === 'object'), `${args.slice(0, 2).join(' ')} --json is JSON`)
  }
})
