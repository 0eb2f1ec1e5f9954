import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

// `npm run bench -- <name> [options] [--json]`: runs bench/<name>.ts, which prints a human table;
// with --json the last line of output is one JSON object with the figures. Options after the
// name are the benchmark's own (only `compare` takes any).

export interface BenchOptions {
  json: boolean
  /** the arguments after the benchmark's name */
  args: string[]
}

const here = path.dirname(fileURLToPath(import.meta.url))
const available = fs
  .readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.slice(0, -3))
  .sort()
const argv = process.argv.slice(2)
const nameAt = argv.findIndex((a) => !a.startsWith('-'))
const name = nameAt < 0 ? undefined : argv[nameAt]
const help = [
  `usage: npm run bench -- <name> [--json]`,
  `       npm run bench -- compare [--rounds N] [--duration S] [--modes idle,connects,qos0,qos1,revocation] [--loaders N] [--generator c|node] [--json]`,
  `benchmarks: ${available.join(', ')}`,
  `  compare: kennel vs Mosquitto 2 side by side (docs/PERFORMANCE.md)`,
].join('\n')

if (argv.includes('--help') || argv.includes('-h')) {
  console.log(help)
  process.exit(0)
}
if (name === undefined || !available.includes(name)) {
  console.error(name === undefined ? 'no benchmark named' : `unknown benchmark ${JSON.stringify(name)}`)
  console.error(help)
  process.exit(64)
}

const args = argv.filter((_, i) => i !== nameAt)
const bench = (await import(`./${name}.ts`)) as { run(opts: BenchOptions): Promise<Record<string, unknown>> }
const result = await bench.run({ json: args.includes('--json'), args })
if (args.includes('--json')) console.log(JSON.stringify(result))
