import fs from 'node:fs'
import { App } from 'aws-cdk-lib'
import { configKeys } from '../../config.ts'
import { isKennelError, KennelError } from '../../errors.ts'
import { checkTemplate, controls, type DeploymentReport } from './controls.ts'
import { acknowledgeDeliberateFindings, nagErrors } from './nag.ts'
import { KennelStack, type KennelStackProps } from './stack.ts'
import type { CfnTemplate } from './template.ts'

// Building the app from context values, in the CDK CLI (app.ts) and in-process (`kennel deploy
// check`, the tests): no AWS account and no network are needed to synthesize it.

/** CDK behaviour the stack relies on, set here so every synthesis gets it */
export const FEATURE_FLAGS = {
  // server access logs are admitted by a bucket policy, so the log bucket keeps ACLs disabled
  '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy': true,
}

/** context keys (`cdk deploy -c key=value`, cdk.json, `kennel deploy check -c key=value`) and their defaults */
export const CONTEXT_DEFAULTS = {
  stackName: 'KennelProduction',
  // kennel's own default, so the bucket's lifecycle rule and the retention job agree unless told otherwise
  retentionDays: configKeys.retentionRecordingsDays.default,
  recoveryDays: '30',
  secretsPrefix: 'kennel/production/',
  rdsCaBundle: '/etc/kennel/rds-global-bundle.pem',
  brokerTasks: '2',
  apiTasks: '2',
} as const

/** what `kennel deploy check` synthesizes with when the operator has not given these: the controls do not depend on them */
export const CHECK_PLACEHOLDERS = {
  image: 'kennel:check-only',
  securityContact: 'mailto:security@kennel.invalid',
  publicUrl: 'https://kennel.invalid',
  mailFrom: 'kennel <no-reply@check-only.kennel.invalid>',
} as const

/** every context key the app reads: the required ones (no default), alertWebhook, and those with a default */
export const CONTEXT_KEYS = [
  'image',
  'securityContact',
  'publicUrl',
  'mailFrom',
  'alertWebhook',
  ...Object.keys(CONTEXT_DEFAULTS),
]

export type Context = Record<string, string | undefined>

function bad(key: string, expected: string, got: string | undefined): never {
  throw new KennelError(
    'KENNEL_ERR_DEPLOY_DEFINITION',
    `context ${key} must be ${expected} (got ${got === undefined ? 'nothing' : JSON.stringify(got)})`,
  )
}

/** a required context value that becomes the kennel setting of the same name, judged by kennel's own parser for it */
function kennelSetting(context: Context, key: 'publicUrl' | 'mailFrom', expected: string): string {
  const raw = context[key]
  if (raw === undefined || raw.trim() === '') return bad(key, expected, raw)
  try {
    return configKeys[key].parse(raw.trim(), `context ${key}`) ?? bad(key, expected, raw)
  } catch (err) {
    if (isKennelError(err, 'KENNEL_ERR_CONFIG')) throw new KennelError('KENNEL_ERR_DEPLOY_DEFINITION', err.message)
    throw err
  }
}

function integer(context: Context, key: keyof typeof CONTEXT_DEFAULTS, min: number, max: number): number {
  const raw = context[key] ?? CONTEXT_DEFAULTS[key]
  const n = Number(raw)
  return /^\d+$/.test(raw) && n >= min && n <= max ? n : bad(key, `an integer ${min}-${max}`, raw)
}

export function stackProps(context: Context): KennelStackProps & { stackName: string } {
  const image =
    context.image ??
    bad(
      'image',
      'the kennel container image (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/kennel:1.4.2)',
      undefined,
    )
  const securityContact =
    context.securityContact ?? bad('securityContact', 'a mailto: or https: URI (KENNEL_SECURITY_CONTACT)', undefined)
  if (!/^(mailto:|https:\/\/)\S+$/.test(securityContact))
    bad('securityContact', 'a mailto: or https: URI', securityContact)
  const alertWebhook = context.alertWebhook
  if (alertWebhook !== undefined && !/^https:\/\/\S+$/.test(alertWebhook))
    bad('alertWebhook', 'an https: URL', alertWebhook)
  // the listeners bind 0.0.0.0 behind the NLB, so the origin of the API's URLs cannot be guessed
  const publicUrl = kennelSetting(
    context,
    'publicUrl',
    'the https origin clients reach the load balancer at, like https://api.toys.example (KENNEL_PUBLIC_URL)',
  )
  // no default: production refuses kennel's own, and a guessed sender would fail its domain's SPF/DKIM
  const mailFrom = kennelSetting(
    context,
    'mailFrom',
    'the sender of sign-up confirmations, like "kennel <no-reply@toys.example>" (KENNEL_MAIL_FROM)',
  )
  if (mailFrom === configKeys.mailFrom.default)
    bad('mailFrom', "the operator's own sender address, not kennel's default", mailFrom)
  const secretsPrefix = context.secretsPrefix ?? CONTEXT_DEFAULTS.secretsPrefix
  if (!/^[\w/+=.@-]*$/.test(secretsPrefix)) bad('secretsPrefix', 'a Secrets Manager name prefix', secretsPrefix)
  return {
    stackName: context.stackName ?? CONTEXT_DEFAULTS.stackName,
    image,
    securityContact,
    alertWebhook,
    publicUrl,
    mailFrom,
    secretsPrefix,
    rdsCaBundle: context.rdsCaBundle ?? CONTEXT_DEFAULTS.rdsCaBundle,
    retentionDays: integer(context, 'retentionDays', 1, 36500),
    recoveryDays: integer(context, 'recoveryDays', 1, 365),
    brokerTasks: integer(context, 'brokerTasks', 1, 100),
    apiTasks: integer(context, 'apiTasks', 1, 100),
  }
}

export const newApp = (): App => new App({ context: FEATURE_FLAGS })

/** the app and its one stack, deliberate cdk-nag findings acknowledged */
export function buildApp(context: Context, app = newApp()): { app: App; stack: KennelStack } {
  const props = stackProps(context)
  const stack = new KennelStack(app, props.stackName, props)
  acknowledgeDeliberateFindings(stack)
  return { app, stack }
}

/** synthesize in-process and keep only the template: the cloud assembly (a temporary directory) is removed */
export function templateOf(app: App, stack: KennelStack): CfnTemplate {
  const assembly = app.synth()
  try {
    return assembly.getStackArtifact(stack.artifactId).template as CfnTemplate
  } finally {
    fs.rmSync(assembly.directory, { recursive: true, force: true })
  }
}

/** the context in infra/deploy/cdk/cdk.json, which `cdk deploy` also reads */
export function cdkJsonContext(): Context {
  const file = new URL('./cdk.json', import.meta.url)
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { context?: Record<string, unknown> }
  return Object.fromEntries(
    Object.entries(json.context ?? {})
      .filter(([k]) => !k.startsWith('@'))
      .map(([k, v]) => [k, String(v)]),
  )
}

export const NAG_CONTROL = {
  id: 'cdk-nag-aws-solutions',
  requirement: 'R14',
  holds: "cdk-nag's AwsSolutions pack reports no error that is not acknowledged with its reason",
}

/** synthesize with the operator's context and run every control and cdk-nag: what `kennel deploy check` prints */
export function checkDeployment(overrides: Context): DeploymentReport {
  const given = { ...cdkJsonContext(), ...overrides }
  const placeholders = Object.keys(CHECK_PLACEHOLDERS).filter((k) => given[k] === undefined)
  const { app, stack } = buildApp({ ...CHECK_PLACEHOLDERS, ...given })
  const findings = checkTemplate(templateOf(app, stack))
  for (const e of nagErrors(stack))
    findings.push({ control: NAG_CONTROL.id, path: e.path, message: `${e.rule}: ${e.message}` })
  return {
    stack: stack.stackName,
    placeholders,
    controls: [...controls.map(({ id, requirement, holds }) => ({ id, requirement, holds })), NAG_CONTROL],
    findings,
  }
}
