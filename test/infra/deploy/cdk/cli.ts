import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import type { Synthesized } from './synthesized.ts'

// `kennel deploy check` as an operator runs it: from any directory, synthesizing the CDK app, or
// judging a template file; exit codes and messages from the error catalogue.

const bin = path.resolve('bin/kennel.js')

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

export function cliChecks(t: Test, s: Synthesized): void {
  t.test('kennel deploy check: exit codes and messages', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-deploy-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const write = (name: string, body: string) => (fs.writeFileSync(path.join(dir, name), body), name)
    const noStack = (stderr: string) => t.notMatch(stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace')

    const ok = await kennel(['deploy', 'check'], dir)
    t.equal(ok.code, 0, ok.stderr)
    t.match(
      ok.stdout,
      /^stack KennelProduction, synthesized from infra\/deploy\/cdk\n/,
      'synthesizes the CDK app, from any directory',
    )
    t.match(ok.stdout, /placeholders for image, securityContact, publicUrl, mailFrom:/)
    t.match(ok.stdout, /✓ db-not-public/)
    t.match(ok.stdout, /✓ cdk-nag-aws-solutions/)
    t.notMatch(ok.stdout, /✗/)
    t.match(ok.stdout, /all 20 controls hold\n$/)

    t.equal(
      (await kennel(['deploy', 'check', '--template', write('good.json', JSON.stringify(s.json))], dir)).code,
      0,
      'the synthesized template as a file holds too',
    )

    const weak = structuredClone(s.json) as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>
    }
    for (const r of Object.values(weak.Resources)) {
      if (r.Type === 'AWS::RDS::DBInstance') r.Properties.PubliclyAccessible = true
      if (r.Type === 'AWS::ElasticLoadBalancingV2::Listener' && r.Properties.Port === 8883)
        r.Properties.Protocol = 'TLS'
    }
    const bad = await kennel(['deploy', 'check', '--template', write('weak.json', JSON.stringify(weak))], dir)
    t.equal(bad.code, 1)
    t.match(bad.stdout, /^weak\.json \(cdk-nag skipped: it needs the CDK app\)\n/)
    t.match(bad.stdout, /✗ db-not-public[^\n]*\n\s+Database\w+\.PubliclyAccessible: must be false/)
    t.match(
      bad.stdout,
      /✗ edge-tls-passthrough[^\n]*\n\s+Edge\w+\.Protocol: TLS terminates or drops TLS at the balancer/,
    )
    t.match(bad.stdout, /✓ bucket-block-public-access/, 'the other controls still show as holding')
    t.match(
      bad.stderr,
      /^kennel: 2 of 19 controls do not hold in weak\.json \(2 findings\) \(KENNEL_ERR_DEPLOY_UNSAFE\)\n$/,
    )
    noStack(bad.stderr)

    const json = await kennel(['deploy', 'check', '--template', 'weak.json', '--json'], dir)
    t.equal(json.code, 1)
    const report = JSON.parse(json.stdout)
    t.equal(report.ok, false)
    t.same(report.findings.map((f: { control: string }) => f.control).sort(), ['db-not-public', 'edge-tls-passthrough'])

    const broken = await kennel(['deploy', 'check', '--template', write('broken.json', '{"Resources": {')], dir)
    t.equal(broken.code, 65)
    t.match(broken.stderr, /^kennel: broken\.json is not valid JSON: .+ \(KENNEL_ERR_DEPLOY_DEFINITION\)\n$/)
    noStack(broken.stderr)

    const notTemplate = await kennel(['deploy', 'check', '--template', write('other.json', '{"services": []}')], dir)
    t.equal(notTemplate.code, 65)
    t.match(
      notTemplate.stderr,
      /other\.json is not a CloudFormation template \(no Resources object\) \(KENNEL_ERR_DEPLOY_DEFINITION\)/,
    )

    const missing = await kennel(['deploy', 'check', '--template', 'nowhere.json'], dir)
    t.equal(missing.code, 66)
    t.match(missing.stderr, /^kennel: template nowhere\.json does not exist \(KENNEL_ERR_NOT_FOUND\)\n$/)

    const context = await kennel(['deploy', 'check', '-c', 'retentionDays=0'], dir)
    t.equal(context.code, 65)
    t.match(
      context.stderr,
      /^kennel: context retentionDays must be an integer 1-36500 \(got "0"\) \(KENNEL_ERR_DEPLOY_DEFINITION\)\n$/,
    )
    noStack(context.stderr)

    const origin = await kennel(['deploy', 'check', '-c', 'publicUrl=http://api.kennel.example'], dir)
    t.equal(origin.code, 65)
    t.match(
      origin.stderr,
      /^kennel: context publicUrl must be an https URL with no path, query or fragment, like https:\/\/api\.toys\.example \(got "http:\/\/api\.kennel\.example"\) \(KENNEL_ERR_DEPLOY_DEFINITION\)\n$/,
    )
    noStack(origin.stderr)

    const pair = await kennel(['deploy', 'check', '-c', 'retentionDays'], dir)
    t.equal(pair.code, 64)
    t.match(pair.stderr, /--context takes key=value \(got "retentionDays"\) \(KENNEL_ERR_VALIDATION\)/)
  })
}
