import { App, Validations } from 'aws-cdk-lib'
import nag from 'cdk-nag'
import { isKennelError } from '../../errors.ts'
import { buildApp, CONTEXT_KEYS, FEATURE_FLAGS, type Context } from './synth.ts'

// The CDK app (`cdk synth`, `cdk deploy`; docs/DEPLOYMENT.md). Context: image, securityContact,
// publicUrl and mailFrom are required, the rest default (CONTEXT_DEFAULTS). cdk-nag's AwsSolutions
// pack runs as a validation plugin, so synthesis stops on any error not acknowledged with its reason.

const app = new App({ context: FEATURE_FLAGS })
const context: Context = Object.fromEntries(
  CONTEXT_KEYS.map((k) => [k, app.node.tryGetContext(k) === undefined ? undefined : String(app.node.tryGetContext(k))]),
)
try {
  buildApp(context, app)
} catch (err) {
  if (!isKennelError(err)) throw err
  process.stderr.write(`${err.message} (${err.code})\n`)
  process.exit(1)
}
Validations.of(app).addPlugins(new nag.AwsSolutionsChecks(app))
app.synth()
