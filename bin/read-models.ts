import type { AuditSigner } from '../projections/audit/keys.ts'
import { AUDIT_PROJECTION } from '../projections/audit/projection.ts'
import { MONITOR_PROJECTION } from '../projections/monitor/projection.ts'
import { kennelProjections } from '../projections/catalogue.ts'
import type { Projection } from '../projections/projection.ts'
import { accountsProjection } from '../api/accounts/projection.ts'
import { householdsProjection } from '../api/households/projection.ts'
import { recordingsProjection } from '../api/recordings/projection.ts'
import { devicesProjection } from '../devices/registry.ts'
import type { Config } from '../infra/config.ts'

// Every read model the persistent runner keeps (projections/runner.ts): the audit log and the
// security monitor, and the devices, accounts, households and recordings read models of the
// other contexts. The composition root is the one place that may name them all together; the
// broker and the API also follow the ones they decide with in memory.

export function persistentProjections(config: Config, signer: AuditSigner): Projection[] {
  return [
    ...kennelProjections(config, signer),
    devicesProjection,
    accountsProjection,
    householdsProjection,
    recordingsProjection,
  ]
}

/** the names of persistentProjections, known without the audit signing key (commands that only
 * read must not create one) */
export function persistentProjectionNames(): string[] {
  return [
    AUDIT_PROJECTION,
    MONITOR_PROJECTION,
    devicesProjection.name,
    accountsProjection.name,
    householdsProjection.name,
    recordingsProjection.name,
  ]
}
