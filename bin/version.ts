import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** kennel's version from its package.json, found by walking up from this module: the same
 * answer whether it runs from the sources or from a compiled copy in a sub-directory */
export function kennelVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const file = path.join(dir, 'package.json')
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'kennel' && pkg.version) return pkg.version
    }
    const parent = path.dirname(dir)
    if (parent === dir) return '0.0.0-unknown'
    dir = parent
  }
}
