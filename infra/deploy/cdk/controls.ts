import { taskRoleLeastPrivilege } from './controls/access.ts'
import {
  bucketAccessLogging,
  bucketBlockPublicAccess,
  bucketNoPublicGrant,
  bucketSseKms,
  bucketTlsOnly,
  bucketVersioning,
  recordingsRetention,
} from './controls/buckets.ts'
import {
  dbCredentialsManaged,
  dbEncrypted,
  dbIngressOnlyFromKennel,
  dbNotPublic,
  dbTlsRequired,
  redisTlsAuth,
} from './controls/datastores.ts'
import { envProduction, noInlineSecrets } from './controls/environment.ts'
import { factsOf, type Control } from './controls/facts.ts'
import { edgeTlsPassthrough, metricsNotPublic, noPlaintextMqtt } from './controls/network.ts'
import type { CfnTemplate } from './template.ts'

// R14: the checks that prove a synthesized template keeps the database and the recordings
// private. `kennel deploy check` and the tests run exactly this list (docs/DEPLOYMENT.md names
// each control and the CloudPets finding it answers). Pure functions over the template: no AWS
// account and no CDK needed to judge one.

export interface Finding {
  control: string
  path: string
  message: string
}
export type { Control }

/** what `kennel deploy check` prints: the controls that ran and what broke them */
export interface DeploymentReport {
  stack: string
  /** context keys filled with placeholders because the operator did not give them */
  placeholders: string[]
  controls: Array<{ id: string; requirement: string; holds: string }>
  findings: Finding[]
}

export const controls: readonly Control[] = [
  dbNotPublic,
  dbIngressOnlyFromKennel,
  dbTlsRequired,
  dbCredentialsManaged,
  dbEncrypted,
  redisTlsAuth,
  bucketBlockPublicAccess,
  bucketNoPublicGrant,
  bucketTlsOnly,
  bucketSseKms,
  bucketVersioning,
  bucketAccessLogging,
  recordingsRetention,
  taskRoleLeastPrivilege,
  edgeTlsPassthrough,
  noPlaintextMqtt,
  metricsNotPublic,
  envProduction,
  noInlineSecrets,
]

/** every finding of every control; empty = the template holds every control */
export function checkTemplate(template: CfnTemplate): Finding[] {
  const facts = factsOf(template)
  return controls.flatMap((c) => c.check(facts).map((p) => ({ control: c.id, ...p })))
}
