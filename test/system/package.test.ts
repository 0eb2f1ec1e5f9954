import fs from 'node:fs'
import t from 'tap'

// What `npm install` checks before anything runs: the supported Node.js versions, and which
// dependencies may run install scripts (npm ≥ 11 warns about any script allowScripts does not
// cover, and will refuse them).

const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { engines: { node: string }; allowScripts: Record<string, boolean> }
const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { engines?: { node: string }; hasInstallScript?: boolean }> }

t.test('engines: Node.js 22 and later (20 is end of life; cookie@2 needs 22), the same in the lock file', async (t) => {
  t.equal(pkg.engines.node, '>=22')
  t.same(lock.packages['']!.engines, pkg.engines)
})

t.test('allowScripts covers every dependency with an install script, and allows only the native builds', async (t) => {
  const withScripts = Object.entries(lock.packages)
    .filter(([where, p]) => where !== '' && p.hasInstallScript)
    .map(([where]) => where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length))
  const named = (key: string): string => key.replace(/(?<=.)@.*$/, '')
  t.same(Object.keys(pkg.allowScripts).map(named).sort(), [...new Set(withScripts)].sort(), 'exactly the packages with install scripts, no stale entry')
  const allowed = Object.entries(pkg.allowScripts).filter(([, ok]) => ok).map(([key]) => named(key)).sort()
  // argon2 and better-sqlite3 pick or build their native addon at install; esbuild's postinstall
  // only optimises (its platform package is resolved at run time) and protobufjs's checks a
  // version scheme
  t.same(allowed, ['argon2', 'better-sqlite3'])
})
