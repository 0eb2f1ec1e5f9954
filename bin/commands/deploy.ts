import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Command } from 'commander'
import { checkDefinition, rules } from '../../infra/deploy/check.ts'
import { parseDefinition } from '../../infra/deploy/definition.ts'
import { KennelError } from '../../infra/errors.ts'
import { action } from '../context.ts'

// `kennel deploy check` (R14): exit 0 only when every control of the production definition holds,
// so CI can gate a deployment on it.

const SHIPPED = fileURLToPath(new URL('../../infra/deploy/production.json', import.meta.url))

function read(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new KennelError('KENNEL_ERR_NOT_FOUND', `deployment definition ${file} does not exist`)
    throw new KennelError('KENNEL_ERR_DEPLOY_DEFINITION', `cannot read deployment definition ${file}: ${(err as Error).message}`)
  }
}

export function registerDeployCommands(program: Command): void {
  const deploy = program.command('deploy').description('the production deployment definition (R14)')
  deploy
    .command('check')
    .description('prove a deployment definition keeps the database and object store private; exit 1 on any finding')
    .argument('[file]', 'deployment definition (JSON)', SHIPPED)
    .option('--json', 'print the findings as one JSON object')
    .action(
      action(async (file: string, opts: { json?: boolean }) => {
        const findings = checkDefinition(parseDefinition(read(file), file))
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ file, ok: findings.length === 0, rules: rules.map((r) => r.id), findings })}\n`)
        } else {
          const width = Math.max(...rules.map((r) => r.id.length))
          const reqWidth = Math.max(...rules.map((r) => r.requirement.length))
          process.stdout.write(`${file}\n`)
          for (const r of rules) {
            const own = findings.filter((f) => f.rule === r.id)
            process.stdout.write(`  ${own.length === 0 ? '✓' : '✗'} ${r.id.padEnd(width)}  ${r.requirement.padEnd(reqWidth)}  ${r.holds}\n`)
            for (const f of own) process.stdout.write(`      ${f.path}: ${f.message}\n`)
          }
        }
        const failed = new Set(findings.map((f) => f.rule)).size
        if (failed > 0) throw new KennelError('KENNEL_ERR_DEPLOY_UNSAFE', `${failed} of ${rules.length} controls do not hold in ${file} (${findings.length} finding${findings.length === 1 ? '' : 's'})`)
        if (!opts.json) process.stdout.write(`all ${rules.length} controls hold\n`)
      }),
    )
}
