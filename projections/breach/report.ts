import { randomUUID } from 'node:crypto'
import { KennelError } from '../../infra/errors.ts'
import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import { AuditLog, type AuditKey } from '../audit/log.ts'
import type { ReadModelStore } from '../readmodels/port.ts'
import { AUDIT_REPORTS_STREAM, type AccountHolderNotificationRequired, type BreachReportGenerated } from './events.ts'

// Breach reconstruction (R16): given a credential and a time window, every action it performed
// (metadata.actor or metadata.credential, docs/EVENTS.md), every household, account, device and
// recording those actions touched, the presigned URLs it obtained and their use, and the account
// holders to notify with the reason each is on the list. The report and each notification are
// appended to `audit-reports` before the report is returned.

export type CredentialKind = 'device' | 'cert' | 'account' | 'token'

export interface Credential {
  kind: CredentialKind
  value: string
}

const VALUE = /^[A-Za-z0-9._:@-]{1,200}$/

export function parseCredential(raw: string): Credential {
  const i = raw.indexOf(':')
  const kind = raw.slice(0, i) as CredentialKind
  let value = raw.slice(i + 1)
  if (i < 0 || !['device', 'cert', 'account', 'token'].includes(kind)) {
    throw new KennelError('KENNEL_ERR_CREDENTIAL_INVALID', `credential must be device:<id>, cert:<serial>, account:<id> or token:<id> (got ${JSON.stringify(raw)})`)
  }
  if (kind === 'cert') value = value.replace(/:/g, '').toLowerCase()
  if (!VALUE.test(value) || (kind === 'cert' && !/^[0-9a-f]+$/.test(value))) {
    throw new KennelError('KENNEL_ERR_CREDENTIAL_INVALID', `invalid ${kind} credential value ${JSON.stringify(raw.slice(i + 1))}`)
  }
  return { kind, value }
}

/** the audit keys under which the credential's own actions are indexed */
function credentialKeys(c: Credential): AuditKey[] {
  switch (c.kind) {
    case 'device':
      return [`actor:device:${c.value}`, `credential:device:${c.value}`]
    case 'cert':
      return [`credential:cert:${c.value}`]
    case 'account':
      return [`actor:account:${c.value}`, `credential:password:${c.value}`, `credential:account:${c.value}`]
    case 'token':
      return [`credential:token:${c.value}`]
    default: {
      const _: never = c.kind
      return _
    }
  }
}

function isoTime(raw: string, name: string): string {
  const t = Date.parse(raw)
  if (!/^\d{4}-\d{2}-\d{2}/.test(raw) || Number.isNaN(t)) throw new KennelError('KENNEL_ERR_VALIDATION', `${name} must be an ISO 8601 time (got ${JSON.stringify(raw)})`)
  return new Date(t).toISOString()
}

export interface BreachReportRequest {
  /** `<kind>:<value>` with kind device|cert|account|token */
  credential: string
  /** ISO time, inclusive */
  since: string
  /** ISO time, exclusive */
  until: string
  /** who asked for the report (`account:<id>`, `cli:<user>`), recorded on the report event */
  actor: string
  /** default: a random UUID */
  reportId?: string
}

export interface ReportedAction {
  position: number
  time: string
  type: string
  stream: string
  id: string
}

export interface PresignedUrl {
  kind: 'upload' | 'download'
  recordingId: string
  issuedAt: string
  until: string
  position: number
  /** events showing the URL was used before it expired */
  used: ReportedAction[]
}

export interface Notification {
  accountId: string
  householdIds: string[]
  reasons: string[]
}

export interface BreachReport {
  reportId: string
  credential: string
  since: string
  until: string
  throughPosition: number
  actions: ReportedAction[]
  householdIds: string[]
  accountIds: string[]
  deviceIds: string[]
  recordingIds: string[]
  urls: PresignedUrl[]
  notifications: Notification[]
}

export interface BreachReportDeps {
  store: EventStore
  /** the audit read model, caught up (the runner's `caughtUp` / `waitFor`) */
  readModels: ReadModelStore
}

const URL_TYPES: Record<string, PresignedUrl['kind']> = { UploadUrlIssued: 'upload', DownloadUrlIssued: 'download' }
/** events that show a presigned URL was used */
const URL_USE_TYPES: Record<PresignedUrl['kind'], readonly string[]> = { upload: ['RecordingStored'], download: ['RecordingDownloaded'] }
const HOLDER_TYPES = ['HouseholdCreated', 'MemberAdded', 'MemberRemoved']

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
const action = (e: RecordedEvent): ReportedAction => ({ position: e.position, time: e.time, type: e.type, stream: e.stream, id: e.id })
const sorted = (s: Set<string>): string[] => [...s].sort()

/** Build the report, append it and its notifications to `audit-reports`, and return it. */
export async function buildBreachReport(deps: BreachReportDeps, request: BreachReportRequest): Promise<BreachReport> {
  const credential = parseCredential(request.credential)
  const since = isoTime(request.since, 'since')
  const until = isoTime(request.until, 'until')
  if (since >= until) throw new KennelError('KENNEL_ERR_VALIDATION', `since (${since}) must be before until (${until})`)
  const log = new AuditLog(deps.store, deps.readModels)
  const throughPosition = await deps.store.headPosition()
  const actions = (await log.events(credentialKeys(credential), { since, until })).filter((e) => e.stream !== AUDIT_REPORTS_STREAM)

  const households = new Set<string>()
  const accounts = new Set<string>()
  const devices = new Set<string>()
  const recordings = new Set<string>()
  if (credential.kind === 'device') devices.add(credential.value)
  if (credential.kind === 'account') accounts.add(credential.value)
  const urls: PresignedUrl[] = []
  for (const e of actions) {
    const d = (e.data ?? {}) as Record<string, unknown>
    const add = (set: Set<string>, v: unknown) => str(v) && set.add(str(v)!)
    add(households, d.householdId)
    add(accounts, d.accountId)
    add(accounts, d.ownerAccountId)
    add(devices, d.deviceId)
    add(recordings, d.recordingId)
    const kind = URL_TYPES[e.type]
    if (kind && str(d.recordingId)) urls.push({ kind, recordingId: str(d.recordingId)!, issuedAt: e.time, until: str(d.until) ?? e.time, position: e.position, used: [] })
  }

  // a URL was used when its recording shows the matching event between issuance and expiry
  for (const url of urls) {
    const window = { since: url.issuedAt, until: new Date(Date.parse(url.until) + 1).toISOString() }
    url.used = (await log.events([`recording:${url.recordingId}`], window, URL_USE_TYPES[url.kind])).filter((e) => e.position > url.position).map(action)
  }

  // a recording belongs to the household named when it was created; a device to the households
  // that claimed it before the window closed
  for (const r of [...recordings]) {
    for (const e of await log.events([`recording:${r}`], { until }, ['RecordingCreated'])) {
      const d = e.data as Record<string, unknown>
      if (str(d.householdId)) households.add(str(d.householdId)!)
      if (str(d.deviceId)) devices.add(str(d.deviceId)!)
    }
  }
  const devicesHousehold = new Map<string, Set<string>>()
  for (const device of devices) {
    for (const e of await log.events([`device:${device}`], { until }, ['DeviceClaimed'])) {
      const h = str((e.data as Record<string, unknown>).householdId)
      if (!h) continue
      households.add(h)
      devicesHousehold.set(h, (devicesHousehold.get(h) ?? new Set()).add(device))
    }
  }

  const notifications = new Map<string, Notification>()
  const notify = (accountId: string, householdId: string | undefined, reason: string) => {
    const n = notifications.get(accountId) ?? { accountId, householdIds: [], reasons: [] }
    if (householdId && !n.householdIds.includes(householdId)) n.householdIds.push(householdId)
    if (!n.reasons.includes(reason)) n.reasons.push(reason)
    notifications.set(accountId, n)
  }
  for (const h of sorted(households)) {
    const holders = new Map<string, string>()
    for (const e of await log.events([`household:${h}`], { until }, HOLDER_TYPES)) {
      const d = e.data as Record<string, unknown>
      const who = str(d.ownerAccountId) ?? str(d.accountId)
      if (!who) continue
      if (e.type === 'MemberRemoved') holders.delete(who)
      else holders.set(who, e.type === 'HouseholdCreated' ? 'owner' : 'member')
    }
    const touchedDevices = sorted(devicesHousehold.get(h) ?? new Set())
    const via = touchedDevices.length > 0 ? ` (through device ${touchedDevices.join(', ')})` : ''
    for (const [accountId, role] of holders) notify(accountId, h, `${role} of household ${h}, touched by the credential ${credential.kind}:${credential.value}${via} between ${since} and ${until}`)
  }
  for (const a of sorted(accounts)) notify(a, undefined, `account ${a} was used or touched by the credential ${credential.kind}:${credential.value} between ${since} and ${until}`)
  for (const n of notifications.values()) n.householdIds.sort()

  const report: BreachReport = {
    reportId: request.reportId ?? randomUUID(),
    credential: `${credential.kind}:${credential.value}`,
    since,
    until,
    throughPosition,
    actions: actions.map(action),
    householdIds: sorted(households),
    accountIds: sorted(accounts),
    deviceIds: sorted(devices),
    recordingIds: sorted(recordings),
    urls,
    notifications: [...notifications.values()].sort((a, b) => a.accountId.localeCompare(b.accountId)),
  }
  await recordReport(deps.store, report, request.actor)
  return report
}

async function recordReport(store: EventStore, r: BreachReport, actor: string): Promise<void> {
  const generated: BreachReportGenerated = {
    type: 'BreachReportGenerated',
    data: {
      reportId: r.reportId,
      credential: r.credential,
      since: r.since,
      until: r.until,
      throughPosition: r.throughPosition,
      actions: r.actions.length,
      householdIds: r.householdIds,
      accountIds: r.accountIds,
      deviceIds: r.deviceIds,
      recordingIds: r.recordingIds,
      urlsIssued: r.urls.length,
      urlsUsed: r.urls.filter((u) => u.used.length > 0).length,
      notifications: r.notifications.length,
    },
  }
  const notices: AccountHolderNotificationRequired[] = r.notifications.map((n) => ({ type: 'AccountHolderNotificationRequired', data: { reportId: r.reportId, ...n } }))
  await store.append(AUDIT_REPORTS_STREAM, [generated, ...notices].map((e) => ({ ...e, metadata: { actor, correlationId: r.reportId } })))
}
