// @ts-check
// The second half of `npm run build` (the first is tsc -p tsconfig.build.json): the files the
// compiled code reads at run time beside itself, which tsc does not copy.
import fs from 'node:fs'
import path from 'node:path'

const root = path.resolve(import.meta.dirname, '..')
const assets = ['api/console/public', 'api/accounts/common-passwords.txt']
for (const asset of assets) {
  const from = path.join(root, asset)
  const to = path.join(root, 'dist', asset)
  fs.rmSync(to, { recursive: true, force: true })
  fs.cpSync(from, to, { recursive: true })
}
// the entry is run as `kennel` when installed: executable, like the source one
fs.chmodSync(path.join(root, 'dist', 'bin', 'kennel.js'), 0o755)
