import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Command } from 'commander'
import { checkTemplate, controls, type DeploymentReport } from '../../infra/deploy/cdk/controls.ts'
import {
  CDK_DIR,
  cdkDependenciesInstalled,
  INSTALL_COMMAND,
  installCdkDependencies,
} from '../../infra/deploy/cdk/install.ts'
import type { CfnTemplate } from '../../infra/deploy/cdk/template.ts'
import { KennelError } from '../../infra/errors.ts'
import { action } from '../context.ts'

// `kennel deploy check` (R14): synthesize the CDK app in infra/deploy/cdk and exit 0 only when
// every control and cdk-nag's AwsSolutions pack hold, so CI can gate a deployment on it.
// `--template` judges an already synthesized template (cdk.out/…template.json) instead.

interface Options {
  json?: boolean
  context?: string[]
  template?: string
}

function parseContext(pairs: string[] | undefined): Record<string, string> {
  return Object.fromEntries(
    (pairs ?? []).map((pair) => {
      const eq = pair.indexOf('=')
      if (eq <= 0)
        throw new KennelError('KENNEL_ERR_VALIDATION', `--context takes key=value (got ${JSON.stringify(pair)})`)
      return [pair.slice(0, eq), pair.slice(eq + 1)]
    }),
  )
}

function readTemplate(file: string): CfnTemplate {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new KennelError('KENNEL_ERR_NOT_FOUND', `template ${file} does not exist`)
    throw new KennelError('KENNEL_ERR_DEPLOY_DEFINITION', `cannot read template ${file}: ${(err as Error).message}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new KennelError('KENNEL_ERR_DEPLOY_DEFINITION', `${file} is not valid JSON: ${(err as Error).message}`)
  }
  const resources = (json as { Resources?: unknown } | null)?.Resources
  if (typeof resources !== 'object' || resources === null || Array.isArray(resources)) {
    throw new KennelError(
      'KENNEL_ERR_DEPLOY_DEFINITION',
      `${file} is not a CloudFormation template (no Resources object)`,
    )
  }
  return json as CfnTemplate
}

async function synthesizeAndCheck(context: Record<string, string>): Promise<DeploymentReport> {
  if (!cdkDependenciesInstalled()) {
    process.stderr.write(`kennel: installing the CDK app's dependencies once (${INSTALL_COMMAND}, about 220 MB)\n`)
    try {
      await installCdkDependencies()
    } catch (err) {
      throw new KennelError(
        'KENNEL_ERR_UNAVAILABLE',
        `cannot install the CDK app's dependencies (${(err as Error).message}); run ${INSTALL_COMMAND} and retry`,
      )
    }
  }
  // loaded only now, and by a computed specifier: it needs aws-cdk-lib from infra/deploy/cdk/node_modules,
  // which kennel's own install and type check do without
  // (the app is TypeScript run by tsx: the compiled CLI registers tsx's loader for it, which a
  // development install has)
  if (!import.meta.url.endsWith('.ts')) {
    const tsx = await import('tsx/esm/api').catch(() => undefined)
    if (!tsx)
      throw new KennelError(
        'KENNEL_ERR_UNAVAILABLE',
        'kennel deploy check runs the CDK app from the source tree: install with development dependencies (npm install) and retry',
      )
    tsx.register()
  }
  const synth = (await import(pathToFileURL(path.join(CDK_DIR, 'synth.ts')).href)) as {
    checkDeployment: (context: Record<string, string>) => DeploymentReport
  }
  return synth.checkDeployment(context)
}

function print(report: DeploymentReport, source: string): void {
  const width = Math.max(...report.controls.map((c) => c.id.length))
  const reqWidth = Math.max(...report.controls.map((c) => c.requirement.length))
  process.stdout.write(`${source}\n`)
  if (report.placeholders.length > 0)
    process.stdout.write(
      `  (placeholders for ${report.placeholders.join(', ')}: pass -c key=value or set them in infra/deploy/cdk/cdk.json)\n`,
    )
  for (const c of report.controls) {
    const own = report.findings.filter((f) => f.control === c.id)
    process.stdout.write(
      `  ${own.length === 0 ? '✓' : '✗'} ${c.id.padEnd(width)}  ${c.requirement.padEnd(reqWidth)}  ${c.holds}\n`,
    )
    for (const f of own) process.stdout.write(`      ${f.path}: ${f.message}\n`)
  }
}

export function registerDeployCommands(program: Command): void {
  const deploy = program
    .command('deploy')
    .description('the production deployment: an AWS CDK app in infra/deploy/cdk (R14)')
  deploy
    .command('check')
    .description(
      "synthesize the production stack and prove it keeps the database and recordings private (every control and cdk-nag's AwsSolutions pack); exit 1 on any finding",
    )
    .option('-c, --context <key=value...>', 'CDK context, as for cdk deploy (image, securityContact, retentionDays, …)')
    .option(
      '--template <file>',
      'check a synthesized CloudFormation template instead (cdk-nag needs the app and is skipped)',
    )
    .option('--json', 'print the report as one JSON object')
    .action(
      action(async (opts: Options) => {
        let report: DeploymentReport
        let source: string
        if (opts.template !== undefined) {
          const findings = checkTemplate(readTemplate(opts.template))
          report = {
            stack: opts.template,
            placeholders: [],
            controls: controls.map(({ id, requirement, holds }) => ({ id, requirement, holds })),
            findings,
          }
          source = `${opts.template} (cdk-nag skipped: it needs the CDK app)`
        } else {
          report = await synthesizeAndCheck(parseContext(opts.context))
          source = `stack ${report.stack}, synthesized from infra/deploy/cdk`
        }
        if (opts.json) process.stdout.write(`${JSON.stringify({ ...report, ok: report.findings.length === 0 })}\n`)
        else print(report, source)
        const failed = new Set(report.findings.map((f) => f.control)).size
        if (failed > 0)
          throw new KennelError(
            'KENNEL_ERR_DEPLOY_UNSAFE',
            `${failed} of ${report.controls.length} controls do not hold in ${report.stack} (${report.findings.length} finding${report.findings.length === 1 ? '' : 's'})`,
          )
        if (!opts.json) process.stdout.write(`all ${report.controls.length} controls hold\n`)
      }),
    )
}
