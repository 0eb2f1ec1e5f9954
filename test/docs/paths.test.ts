import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'

// The repository explains itself: every repository path a document or a comment names exists,
// so a reader with only the clone can follow each reference.

const root = path.resolve(import.meta.dirname, '../..')
const SKIP = new Set(['node_modules', 'dist', '.git', '.tap', 'data', 'cdk.out'])

function files(dir: string, out: string[] = []): string[] {
  for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    if (SKIP.has(entry.name)) continue
    const rel = path.join(dir, entry.name)
    if (entry.isDirectory()) files(rel, out)
    else if (/\.(ts|js|md|json|yaml|yml|sh)$/.test(entry.name) || entry.name === 'run') out.push(rel)
  }
  return out
}

const all = files('.').map((f) => f.replace(/^\.\//, ''))
const text = new Map(all.map((f) => [f, fs.readFileSync(path.join(root, f), 'utf8')]))
// the folders a path of ours starts with
const TOP = /^(api|bin|broker|devices|docs|infra|projections|test|bench)\//

/** the comment part of a line of code: after `//`, or a line of a block comment */
function commentOf(line: string): string {
  const trimmed = line.trimStart()
  if (trimmed.startsWith('*') || trimmed.startsWith('/*')) return trimmed
  const at = line.indexOf('// ')
  return at >= 0 ? line.slice(at) : ''
}

t.test('every repository path named in the docs and in comments exists', async (t) => {
  const missing: string[] = []
  for (const [f, full] of text) {
    if (f.endsWith('package-lock.json') || f.endsWith('.json')) continue
    // documents whole; code only in its comments (strings may name paths that are not ours to check)
    const s = f.endsWith('.md') ? full : full.split('\n').map(commentOf).join('\n')
    // paths in backticks or plain, with a file extension or ending in /, optionally :line
    for (const m of s.matchAll(
      /(?<![\w./-])((?:api|bin|broker|devices|docs|infra|projections|test|bench)\/[\w./-]*[\w/])(?::(\d+))?/g,
    )) {
      const p = m[1]!.replace(/[.]+$/, '')
      if (
        !TOP.test(p) ||
        p.includes('*') ||
        p.includes('{') ||
        p.includes('...') ||
        p.includes('cdk.out') ||
        p.includes('node_modules')
      )
        continue
      if (/\.(ts|js|md|json|yaml|yml|c|sh|png|txt|html|css)$/.test(p) === false && !p.endsWith('/')) {
        // a folder named without a trailing slash, or a module without its extension
        if (fs.existsSync(path.join(root, p))) continue
        if (fs.existsSync(path.join(root, `${p}.ts`))) continue
        missing.push(`${f}: ${p}`)
        continue
      }
      if (p.startsWith('dist/')) continue
      // a compiled name (dist/ holds the .js of each .ts)
      if (
        !fs.existsSync(path.join(root, p)) &&
        !(p.endsWith('.js') && fs.existsSync(path.join(root, p.replace(/\.js$/, '.ts'))))
      )
        missing.push(`${f}: ${p}`)
      else if (m[2] !== undefined && fs.statSync(path.join(root, p)).isFile()) {
        const lines = fs.readFileSync(path.join(root, p), 'utf8').split('\n').length
        if (Number(m[2]) > lines) missing.push(`${f}: ${p}:${m[2]} (the file has ${lines} lines)`)
      }
    }
  }
  t.same([...new Set(missing)], [])
})
