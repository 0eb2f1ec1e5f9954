import type { BreachReport, HouseholdExposure, TopicUse } from './report.ts'

// The notification list as CSV for a mailing (R16): one row per account holder and household to
// notify, with the address to write to and what the credential touched there. RFC 4180: CRLF line
// ends, a header row, fields quoted when they hold a comma, a quote or a line break (quotes
// doubled). Values come from the event store, where a toy's topic or a person's address may
// begin with a formula character: a cell starting with = + - @ tab or CR is prefixed with ' so
// that a spreadsheet shows it as text instead of evaluating it (CSV injection).

export const CSV_COLUMNS = [
  'report_id',
  'credential',
  'since',
  'until',
  'account_id',
  'contact',
  'household_id',
  'role',
  'devices',
  'topics',
  'recordings',
  'urls_issued',
  'urls_used',
  'urls_used_after_revocation',
  'urls_refused_after_revocation',
  'flags',
  'touched',
] as const

const FORMULA_START = /^[=+\-@\t\r]/

/** one CSV field: neutralised against formulas, then quoted where RFC 4180 requires */
export function csvField(value: string): string {
  const text = FORMULA_START.test(value) ? `'${value}` : value
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

const topicText = (t: TopicUse): string => `${t.action} ${t.topic} (${t.count}${t.denied ? ', denied' : ''})`

function householdColumns(h: HouseholdExposure | undefined): string[] {
  if (!h) return ['', '', '', '0', '0', '0', '0', '']
  return [
    h.deviceIds.join('; '),
    h.topics.map(topicText).join('; '),
    h.recordingIds.join('; '),
    String(h.urls.length),
    String(h.urls.filter((u) => u.used.length > 0).length),
    String(h.urls.filter((u) => u.used.some((x) => x.afterRevocation)).length),
    // attempts the embedded store refused: nothing served, but someone holds the URL
    String(h.urls.filter((u) => u.refused.some((x) => x.afterRevocation)).length),
    h.flags.join('; '),
  ]
}

export function breachReportCsv(r: BreachReport): string {
  const households = new Map(r.households.map((h) => [h.householdId, h]))
  const rows: string[][] = [[...CSV_COLUMNS]]
  for (const n of r.notifications) {
    // an account touched directly, outside any household, still gets its row
    for (const householdId of n.householdIds.length > 0 ? n.householdIds : ['']) {
      const h = households.get(householdId)
      const role = h?.holders.find((x) => x.accountId === n.accountId)?.role ?? ''
      const touched = [
        ...(h?.reached ?? []),
        ...(r.accountIds.includes(n.accountId) ? ['the account itself was used or touched'] : []),
      ]
      rows.push([
        r.reportId,
        r.credential,
        r.since,
        r.until,
        n.accountId,
        n.contact ?? '',
        householdId,
        role,
        ...householdColumns(h),
        touched.join('; '),
      ])
    }
  }
  return rows.map((row) => `${row.map(csvField).join(',')}\r\n`).join('')
}
