import type { ContactStatus } from './contacts.ts'
import type { Revocation } from './revocation.ts'

// Events of breach reconstruction (R16), appended by projections/ to `audit-reports`. They hold
// what lets the report be reproduced (ids, positions, topics) and never a contact address: an
// address written here would outlive the person's erasure (R12).

export const AUDIT_REPORTS_STREAM = 'audit-reports'

/** what the credential touched in one household */
export interface HouseholdTouched {
  householdId: string
  /** the account holders notified for it */
  accountIds: string[]
  deviceIds: string[]
  /** topics published to and filters subscribed to, with how often; denied attempts marked */
  topics: Array<{ action: 'publish' | 'subscribe'; topic: string; denied: boolean; count: number }>
  recordingIds: string[]
  /** the URLs the credential obtained for the household's recordings: the position of each
   * issuance, of each use and of each refused attempt (`RecordingUrlRefused`), and those after
   * the credential was revoked */
  urls: Array<{
    kind: 'upload' | 'download'
    recordingId: string
    urlId?: string
    issuedAt: number
    usedAt: number[]
    usedAfterRevocation: number[]
    refusedAt: number[]
    refusedAfterRevocation: number[]
  }>
  flags: string[]
}

export interface BreachReportGenerated {
  type: 'BreachReportGenerated'
  data: {
    reportId: string
    credential: string
    since: string
    until: string
    /** the audit log covered every event up to this position */
    throughPosition: number
    actions: number
    householdIds: string[]
    accountIds: string[]
    deviceIds: string[]
    recordingIds: string[]
    urlsIssued: number
    urlsUsed: number
    urlsUsedAfterRevocation: number
    /** URLs with a refused attempt after the revocation, and those attempts (folded events
     * weighed by their `attempts`) */
    urlsRefusedAfterRevocation: number
    refusedAttemptsAfterRevocation: number
    /** the event that revoked the credential, if one did */
    revocation?: Pick<Revocation, 'type' | 'id' | 'position'>
    households: HouseholdTouched[]
    notifications: number
  }
}

export interface AccountHolderNotificationRequired {
  type: 'AccountHolderNotificationRequired'
  data: { reportId: string; accountId: string; householdIds: string[]; reasons: string[]; contact: ContactStatus }
}

export type BreachEvent = BreachReportGenerated | AccountHolderNotificationRequired
