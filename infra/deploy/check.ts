import type { Definition, Finding, Rule } from './definition.ts'
import { bucketBlockPublicAccess, bucketNoPublicAclOrPolicy, bucketSseKms, bucketTlsOnlyPolicy, bucketVersioning } from './rules/buckets.ts'
import { dbAuthenticated, dbEncrypted, dbIngressOnlyFromApp, dbNotPublic, dbTlsRequired, redisTlsAuth } from './rules/datastores.ts'
import { envProduction, noInlineSecrets } from './rules/environment.ts'
import { edgeTlsPassthrough, metricsNotPublic, noPlaintextMqtt } from './rules/network.ts'
import { presignerLeastPrivilege } from './rules/presigner.ts'

// R14: the checker that proves the production definition keeps the database and the object
// store private. One rule per control; each names the requirement and the CloudPets finding it
// answers (docs/DEPLOYMENT.md lists them).

export const rules: readonly Rule[] = [
  dbNotPublic,
  dbIngressOnlyFromApp,
  dbTlsRequired,
  dbAuthenticated,
  dbEncrypted,
  redisTlsAuth,
  bucketBlockPublicAccess,
  bucketNoPublicAclOrPolicy,
  bucketTlsOnlyPolicy,
  bucketSseKms,
  bucketVersioning,
  presignerLeastPrivilege,
  edgeTlsPassthrough,
  noPlaintextMqtt,
  metricsNotPublic,
  envProduction,
  noInlineSecrets,
]

/** every finding of every rule; empty = the definition holds every control */
export function checkDefinition(d: Definition): Finding[] {
  return rules.flatMap((r) => r.check(d).map((p) => ({ rule: r.id, ...p })))
}
