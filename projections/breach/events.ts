// Events of breach reconstruction (R16), appended by projections/ to `audit-reports`.

export const AUDIT_REPORTS_STREAM = 'audit-reports'

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
    notifications: number
  }
}

export interface AccountHolderNotificationRequired {
  type: 'AccountHolderNotificationRequired'
  data: { reportId: string; accountId: string; householdIds: string[]; reasons: string[] }
}

export type BreachEvent = BreachReportGenerated | AccountHolderNotificationRequired
