import fs from 'node:fs'
import path from 'node:path'
import type { Config } from '../infra/config.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import { createAuditProjection } from './audit/projection.ts'
import { devKeyPath, loadAuditSigner, verifierFromPem, type AuditSigner, type AuditVerifier } from './audit/keys.ts'
import type { TreeHead } from './audit/events.ts'
import { latestHead, readHeads } from './audit/heads.ts'
import { verifyAuditLog } from './audit/verify.ts'
import type { ContactResolver } from './breach/contacts.ts'
import { breachReportCsv } from './breach/csv.ts'
import { buildBreachReport } from './breach/report.ts'
import { createMonitorProjection } from './monitor/projection.ts'
import type { MonitorThresholds } from './monitor/rules.ts'
import type { Projection } from './projection.ts'
import { openReadModels, readModelLocation } from './readmodels/open.ts'
import type { EntryLookups, ReadModelStore } from './readmodels/port.ts'

// The projections this context runs, wired from the configuration: what `kennel start` and the
// CLI pass to the persistent runner.

export function auditSigner(config: Config): AuditSigner {
  return loadAuditSigner({ dataDir: config.dataDir, keyPath: config.auditKey, env: config.env })
}

/** the keys `audit verify` trusts: the signer's own, plus a given public key (PEM file) */
export function auditVerifiers(config: Config, publicKeyFile?: string): AuditVerifier[] {
  if (publicKeyFile !== undefined) return [verifierFromPem(fs.readFileSync(publicKeyFile, 'utf8'))]
  const signer =
    config.auditKey !== undefined || fs.existsSync(devKeyPath(config.dataDir)) ? auditSigner(config) : undefined
  return signer ? [verifierFromPem(signer.publicKeyPem)] : []
}

/** the security monitor's thresholds from KENNEL_MONITOR_* (R11) */
export function monitorThresholds(config: Config): MonitorThresholds {
  return {
    'auth-failures-per-ip': config.monitorAuthFailuresPerIp,
    'auth-failures-per-certificate': config.monitorAuthFailuresPerCertificate,
    'revoked-certificate-attempt': config.monitorRevokedCertificateAttempts,
    'denylist-hits': config.monitorDenylistHits,
    'rate-limit-storm': config.monitorRateLimitStorm,
    'download-volume-per-device': config.monitorDownloadsPerDevice,
    'download-volume-per-account': config.monitorDownloadsPerAccount,
    'login-ips-per-account': config.monitorLoginIpsPerAccount,
  }
}

export function kennelProjections(
  config: Config,
  signer: AuditSigner,
  thresholds: Partial<MonitorThresholds> = {},
): Projection[] {
  return [
    createAuditProjection({
      signer,
      headEveryEvents: config.auditHeadEveryEvents,
      headEverySeconds: config.auditHeadEverySeconds,
    }),
    createMonitorProjection({ ...monitorThresholds(config), ...thresholds }),
  ]
}

export function openKennelReadModels(config: Config): Promise<ReadModelStore & EntryLookups> {
  return openReadModels(readModelLocation(config.eventStoreUrl))
}

export function publicKeyFile(config: Config): string {
  return path.join(path.dirname(devKeyPath(config.dataDir)), 'signing-key.pub.pem')
}

/** what the API's auditor routes call (api/audit/routes.ts AuditPort); `contacts` is the
 * composition root's resolver of the accounts' addresses (R16) */
export function createAuditPort(deps: {
  store: EventStore
  readModels: EntryLookups
  verifiers: readonly AuditVerifier[]
  headEveryEvents?: number
  contacts: ContactResolver
}): {
  verify(): Promise<Record<string, unknown>>
  latestHead(): Promise<(TreeHead & { position: number }) | null>
  breachReport(request: {
    credential: string
    since: string
    until: string
    actor: string
  }): Promise<{ report: Record<string, unknown> & { reportId: string }; csv: string }>
} {
  return {
    verify: async () => ({ ...(await verifyAuditLog(deps)) }),
    latestHead: async () => {
      const latest = latestHead(await readHeads(deps.store), deps.verifiers)
      return latest ? { ...latest.head, position: latest.position } : null
    },
    breachReport: async (r) => {
      const report = await buildBreachReport(deps, {
        credential: r.credential,
        since: r.since,
        until: r.until,
        actor: r.actor,
      })
      return { report: { ...report }, csv: breachReportCsv(report) }
    },
  }
}
