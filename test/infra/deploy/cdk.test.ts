import t, { type Test } from 'tap'
import { cdkDependenciesInstalled, INSTALL_COMMAND, installCdkDependencies } from '../../../infra/deploy/cdk/install.ts'

// R14: the production deployment as AWS CDK code (infra/deploy/cdk). Its dependencies are kept
// out of kennel's own install, so this file installs them first (npm registry only) and skips
// with the reason when that is impossible. The stack is synthesized once, in-process, without an
// AWS account. The suites in ./cdk/ need aws-cdk-lib, so they are loaded only then, by a computed
// specifier that kennel's own type check does not follow (infra/deploy/cdk/tsconfig.json checks them).

async function unavailable(): Promise<string | false> {
  if (cdkDependenciesInstalled()) return false
  try {
    await installCdkDependencies()
    return false
  } catch (err) {
    return `the CDK app's dependencies are not installed and ${INSTALL_COMMAND} failed: ${(err as Error).message}`
  }
}

const skip = await unavailable()

t.test('the production deployment (CDK)', { skip }, async (t) => {
  const suites = (await import(new URL('./cdk/suites.ts', import.meta.url).href)) as {
    deploymentSuites: (t: Test) => void
  }
  suites.deploymentSuites(t)
})
