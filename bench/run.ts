import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

// `npm run bench -- <name> [--json]`: runs bench/<name>.ts, which prints a human table; with
// --json the last line of output is one JSON object with the figures.

export interface BenchOptions {
  json: boolean
}

const here = path.dirname(fileURLToPath(import.meta.url))
const available = fs.readdirSync(here).filter((f) => f.endsWith('.ts') && f !== 'run.ts').map((f) => f.slice(0, -3)).sort()
const args = process.argv.slice(2)
const json = args.includes('--json')
const names = args.filter((a) => !a.startsWith('--'))
const name = names[0]

if (names.length !== 1 || !available.includes(name!)) {
  console.error(`${name === undefined ? 'no benchmark named' : `unknown benchmark ${JSON.stringify(name)}`}; available: ${available.join(', ')}`)
  console.error('usage: npm run bench -- <name> [--json]')
  process.exit(64)
}

const bench = (await import(`./${name}.ts`)) as { run(opts: BenchOptions): Promise<Record<string, unknown>> }
const result = await bench.run({ json })
if (json) console.log(JSON.stringify(result))
