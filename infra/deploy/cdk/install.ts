import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

// The CDK app's dependencies (aws-cdk-lib, cdk-nag, the cdk CLI: about 220 MB) live in this
// package's own node_modules, installed on first use so that kennel's own `npm install` stays lean.
// Nothing here imports them: the CLI and the tests call this before they load synth.ts.

/** the CDK package: this directory in the sources; from a compiled copy (dist/infra/deploy/cdk),
 * the package of the source tree it was built from */
export const CDK_DIR = cdkPackageDir(path.dirname(fileURLToPath(import.meta.url)))

function cdkPackageDir(here: string): string {
  for (let dir = here; ; dir = path.dirname(dir)) {
    const candidate = dir === here ? here : path.join(dir, 'infra', 'deploy', 'cdk')
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate
    if (path.dirname(dir) === dir) return here
  }
}
export const INSTALL_COMMAND = 'npm ci --prefix infra/deploy/cdk'

const REQUIRED = ['aws-cdk-lib', 'cdk-nag', 'constructs']

export function cdkDependenciesInstalled(): boolean {
  return REQUIRED.every((name) => fs.existsSync(path.join(CDK_DIR, 'node_modules', name, 'package.json')))
}

/** `npm ci` in this package (from its lock file); rejects with npm's last lines when it fails */
export function installCdkDependencies(): Promise<void> {
  return new Promise((resolve, reject) => {
    const npm = spawn('npm', ['ci', '--no-audit', '--no-fund', '--prefix', CDK_DIR], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    npm.stdout.on('data', (d) => (output += d))
    npm.stderr.on('data', (d) => (output += d))
    npm.on('error', (err) => reject(new Error(`cannot run npm: ${err.message}`)))
    npm.on('close', (code) => {
      if (code === 0 && cdkDependenciesInstalled()) resolve()
      else reject(new Error(`npm ci exited with ${code}: ${output.trim().split('\n').slice(-5).join(' | ')}`))
    })
  })
}
