import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const run = promisify(execFile)

// What `npm install` checks before anything runs: the supported Node.js versions, and which
// dependencies may run install scripts (npm ≥ 11 warns about any script allowScripts does not
// cover, and will refuse them).

const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8')) as {
  engines: { node: string }
  allowScripts: Record<string, boolean>
}
const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8')) as {
  packages: Record<string, { engines?: { node: string }; hasInstallScript?: boolean }>
}

t.test('engines: Node.js 22 and later (20 is end of life; cookie@2 needs 22), the same in the lock file', async (t) => {
  t.equal(pkg.engines.node, '>=22')
  t.same(lock.packages['']!.engines, pkg.engines)
})

t.test('allowScripts covers every dependency with an install script, and allows only the native builds', async (t) => {
  const withScripts = Object.entries(lock.packages)
    .filter(([where, p]) => where !== '' && p.hasInstallScript)
    .map(([where]) => where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length))
  const named = (key: string): string => key.replace(/(?<=.)@.*$/, '')
  t.same(
    Object.keys(pkg.allowScripts).map(named).sort(),
    [...new Set(withScripts)].sort(),
    'exactly the packages with install scripts, no stale entry',
  )
  const allowed = Object.entries(pkg.allowScripts)
    .filter(([, ok]) => ok)
    .map(([key]) => named(key))
    .sort()
  // argon2 and better-sqlite3 pick or build their native addon at install; esbuild's postinstall
  // only optimises (its platform package is resolved at run time) and protobufjs's checks a
  // version scheme
  t.same(allowed, ['argon2', 'better-sqlite3'])
})

t.test('npm start runs the compiled JavaScript: tsx and typescript are for development only', async (t) => {
  const full = JSON.parse(fs.readFileSync('package.json', 'utf8')) as {
    scripts: Record<string, string>
    bin: Record<string, string>
    dependencies: Record<string, string>
    devDependencies: Record<string, string>
  }
  t.equal(full.scripts.start, 'node dist/bin/kennel.js start')
  t.same(full.bin, { kennel: 'dist/bin/kennel.js' })
  t.match(full.scripts.prepare, /npm run build/, 'a fresh clone builds on npm install')
  for (const dev of ['tsx', 'typescript']) {
    t.notOk(dev in full.dependencies, `${dev} is not a run-time dependency`)
    t.ok(dev in full.devDependencies, `${dev} is a development dependency`)
  }
  const files = (fs.readdirSync('dist', { recursive: true }) as string[]).filter((f) => !f.endsWith('.map'))
  t.same(
    files.filter((f) => f.endsWith('.ts')),
    [],
    'the build holds no TypeScript',
  )
  for (const f of [
    'bin/kennel.js',
    'bin/cli.js',
    'bin/projector-worker.js',
    'bin/projector-thread.js',
    'projections/audit/catch-up-worker.js',
    'projections/audit/catch-up-thread.js',
    'infra/eventstore/sqlite-writer.js',
    'api/console/public/index.html',
    'api/accounts/common-passwords.txt',
  ]) {
    t.ok(files.includes(f), `dist/${f}`)
  }
})

t.test(
  'the compiled kennel starts without tsx: the store, its writer and projector threads, both listeners',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-dist-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    // tsx cannot be found from here: a copy of the build outside the repository, with the
    // run-time dependencies linked in one by one
    const app = path.join(dir, 'app')
    fs.cpSync('dist', path.join(app, 'dist'), { recursive: true })
    fs.copyFileSync('package.json', path.join(app, 'package.json'))
    fs.mkdirSync(path.join(app, 'node_modules'))
    for (const entry of fs.readdirSync('node_modules')) {
      if (entry === 'tsx' || entry === 'typescript' || entry === '.bin') continue
      fs.symlinkSync(path.resolve('node_modules', entry), path.join(app, 'node_modules', entry))
    }
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: dir,
      KENNEL_ENV: 'test',
      KENNEL_DATA_DIR: path.join(dir, 'data'),
      KENNEL_MQTT_PORT: '0',
      KENNEL_API_PORT: '0',
      KENNEL_METRICS_PORT: '0',
      KENNEL_LOG_LEVEL: 'warn',
    }
    const version = await run(process.execPath, [path.join(app, 'dist/bin/kennel.js'), '--version'], { env })
    t.match(version.stdout, /^\d+\.\d+\.\d+/, `--version: ${version.stdout.trim()}`)
    const child = spawn(process.execPath, [path.join(app, 'dist/bin/kennel.js'), 'start'], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    t.teardown(() => void child.kill('SIGKILL'))
    let output = ''
    const ops = await new Promise<number>((resolve, reject) => {
      child.stderr!.on('data', (c: Buffer) => {
        output += c.toString()
        const port = /metrics, health: +http:\/\/[\d.]+:(\d+)\/metrics/.exec(output)?.[1]
        if (port && output.includes('Next:')) resolve(Number(port))
      })
      child.once('exit', (code) => reject(new Error(`exited with ${code}:\n${output}`)))
    })
    const ready = await fetch(`http://127.0.0.1:${ops}/readyz`)
    t.equal(ready.status, 200, `ready: ${await ready.text()}`)
    child.kill('SIGTERM')
    t.equal(await new Promise((resolve) => child.once('exit', resolve)), 0, 'and it stops cleanly')
    t.notMatch(output, /tsx|Cannot find/, 'nothing asked for tsx')
  },
)
