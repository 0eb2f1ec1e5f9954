import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'

const bin = path.resolve('bin/kennel.js')
const shipped = JSON.parse(fs.readFileSync('infra/deploy/production.json', 'utf8'))

function kennel(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: cwd } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('kennel deploy check: exit codes and messages', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-deploy-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const write = (name: string, body: string) => (fs.writeFileSync(path.join(dir, name), body), name)
  const noStack = (stderr: string) => t.notMatch(stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace')

  const ok = await kennel(['deploy', 'check'], dir)
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stdout, /production\.json\n/, 'checks the shipped definition by default, from any directory')
  t.match(ok.stdout, /✓ db-not-public/)
  t.notMatch(ok.stdout, /✗/)
  t.match(ok.stdout, /all \d+ controls hold\n$/)

  const publicDb = structuredClone(shipped)
  publicDb.database.publiclyAccessible = true
  publicDb.securityGroups.find((g: { id: string }) => g.id === 'sg-db').ingress.push({ protocol: 'tcp', fromPort: 5432, toPort: 5432, cidr: '0.0.0.0/0' })
  const bad = await kennel(['deploy', 'check', write('public-db.json', JSON.stringify(publicDb))], dir)
  t.equal(bad.code, 1)
  t.match(bad.stdout, /✗ db-not-public[^\n]*\n\s+database\.publiclyAccessible: must be false/)
  t.match(bad.stdout, /✗ db-ingress-only-from-app[^\n]*\n\s+securityGroups\[sg-db\]\.ingress\[1\]: 0\.0\.0\.0\/0 may connect/)
  t.match(bad.stdout, /✓ bucket-block-public-access/, 'the other controls still show as holding')
  t.match(bad.stderr, /^kennel: \d+ of \d+ controls do not hold in public-db\.json \(\d+ findings?\) \(KENNEL_ERR_DEPLOY_UNSAFE\)\n$/)
  noStack(bad.stderr)

  const json = await kennel(['deploy', 'check', 'public-db.json', '--json'], dir)
  t.equal(json.code, 1)
  const report = JSON.parse(json.stdout)
  t.equal(report.ok, false)
  t.ok(report.findings.some((f: { rule: string }) => f.rule === 'db-not-public'))

  const broken = await kennel(['deploy', 'check', write('broken.json', '{"database": {')], dir)
  t.equal(broken.code, 65)
  t.match(broken.stderr, /^kennel: broken\.json is not valid JSON: .+ \(KENNEL_ERR_DEPLOY_DEFINITION\)\n$/)
  noStack(broken.stderr)

  const shape = await kennel(['deploy', 'check', write('shape.json', '{"securityGroups": {"id": "sg-db"}}')], dir)
  t.equal(shape.code, 65)
  t.match(shape.stderr, /securityGroups must be a list \(KENNEL_ERR_DEPLOY_DEFINITION\)/)

  const missing = await kennel(['deploy', 'check', 'nowhere.json'], dir)
  t.equal(missing.code, 66)
  t.match(missing.stderr, /^kennel: deployment definition nowhere\.json does not exist \(KENNEL_ERR_NOT_FOUND\)\n$/)
  noStack(missing.stderr)
})
