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

/** every audit key under which the credential appears at all: as actor or credential, or named
 * in an event's data (a device's enrolment, a certificate's issue, an account's creation) */
function knownKeys(c: Credential): AuditKey[] {
  const own = credentialKeys(c)
  if (c.kind === 'device') return [...own, `device:${c.value}`]
  if (c.kind === 'cert') return [...own, `serial:${c.value}`]
  if (c.kind === 'account') return [...own, `account:${c.value}`]
  return own
}

/** a credential that never appears in the event store is an error, not an empty report: a typo
 * must not produce a report that clears a device or account nobody has (R16) */
async function assertKnown(store: EventStore, log: AuditLog, c: Credential): Promise<void> {
  for (const p of await log.positions(knownKeys(c))) {
    const [e] = await store.readAll({ after: p - 1, maxCount: 1 })
    // earlier reports name accounts too, and prove nothing about the credential
    if (e && e.stream !== AUDIT_REPORTS_STREAM) return
  }
  throw new KennelError('KENNEL_ERR_NOT_FOUND', `the credential ${c.kind}:${c.value} does not appear in the event store`)
}

const ISO_INSTANT = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}))?$/

const daysIn = (year: number, month: number): number =>
  month === 2 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31

/** A window bound is one instant: a full ISO 8601 date-time with Z or an offset, or a bare date
 * (UTC midnight). Checked here, not by Date.parse, which rolls 2026-02-30 over to March 2 and
 * reads a time without a zone as local time (R16: both the CLI and the API come through here). */
export function parseInstant(raw: string, name: string): string {
  const bad = (why: string) => new KennelError('KENNEL_ERR_VALIDATION', `${name} ${JSON.stringify(raw)} ${why}`)
  const m = ISO_INSTANT.exec(raw)
  if (!m) throw bad('is not an ISO 8601 date-time with Z or an offset (2026-03-01T00:00:00Z, 2026-03-01T01:00:00+01:00) or a date (2026-03-01)')
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map((v) => Number(v ?? 0)) as [number, number, number, number, number, number]
  const zone = m[8] ?? 'Z'
  if (month < 1 || month > 12) throw bad(`has no month ${month}`)
  if (day < 1 || day > daysIn(year, month)) throw bad(`is not a calendar date: ${m[1]}-${m[2]} has ${daysIn(year, month)} days`)
  if (hour > 23 || minute > 59 || second > 59) throw bad('is not a time of day')
  const offsetMinutes = zone === 'Z' ? 0 : (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)))
  if (zone !== 'Z' && (Number(zone.slice(1, 3)) > 23 || Number(zone.slice(4, 6)) > 59)) throw bad(`has no offset ${zone}`)
  const t = new Date(0)
  t.setUTCFullYear(year, month - 1, day)
  t.setUTCHours(hour, minute - offsetMinutes, second, Number((m[7] ?? '').padEnd(3, '0').slice(0, 3)))
  return t.toISOString()
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

export interface UrlUse extends ReportedAction {
  /** `url-id`: the use names this URL's id. `inferred`: matched by recording, time window and
   * expiry only, because the events predate URL ids (or are uploads, whose use is the
   * recording's `RecordingStored`), or because the same URL was issued twice in one second;
   * another holder of a URL of the same recording may have been the one who used it. */
  match: 'url-id' | 'inferred'
}

export interface PresignedUrl {
  kind: 'upload' | 'download'
  recordingId: string
  /** the URL's id (api/recordings/service.ts urlIdOf); absent on older events */
  urlId?: string
  issuedAt: string
  until: string
  position: number
  /** events showing the URL was used before it expired */
  used: UrlUse[]
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
  const since = parseInstant(request.since, 'since')
  const until = parseInstant(request.until, 'until')
  if (since >= until) throw new KennelError('KENNEL_ERR_VALIDATION', `since (${since}) must be before until (${until})`)
  const log = new AuditLog(deps.store, deps.readModels)
  await assertKnown(deps.store, log, credential)
  const throughPosition = await deps.store.headPosition()
  const actions = (await log.events(credentialKeys(credential), { since, until })).filter((e) => e.stream !== AUDIT_REPORTS_STREAM)

  const households = new Set<string>()
  const accounts = new Set<string>()
  const devices = new Set<string>()
  const recordings = new Set<string>()
  /** devices the credential used or named in its actions: their households were reached */
  const devicesUsed = new Set<string>()
  // a credential with no action in the window touched nothing, not even its own device or account
  if (credential.kind === 'device' && actions.length > 0) devicesUsed.add(credential.value)
  if (credential.kind === 'account' && actions.length > 0) accounts.add(credential.value)
  /** household -> what the credential did that reached it, for the notification's reason */
  const reached = new Map<string, Set<string>>()
  const reach = (h: string, why: string) => (households.add(h), reached.set(h, (reached.get(h) ?? new Set()).add(why)))
  const urls: PresignedUrl[] = []
  for (const e of actions) {
    const d = (e.data ?? {}) as Record<string, unknown>
    const add = (set: Set<string>, v: unknown) => str(v) && set.add(str(v)!)
    if (str(d.householdId)) reach(str(d.householdId)!, 'acted on the household')
    add(accounts, d.accountId)
    add(accounts, d.ownerAccountId)
    add(devicesUsed, d.deviceId)
    add(recordings, d.recordingId)
    const kind = URL_TYPES[e.type]
    if (kind && str(d.recordingId)) urls.push({ kind, recordingId: str(d.recordingId)!, ...(str(d.urlId) ? { urlId: str(d.urlId)! } : {}), issuedAt: e.time, until: str(d.until) ?? e.time, position: e.position, used: [] })
  }
  for (const d of devicesUsed) devices.add(d)

  for (const url of urls) url.used = await urlUses(log, url)

  // a recording belongs to the household named when it was created
  for (const r of [...recordings]) {
    for (const e of await log.events([`recording:${r}`], { until }, ['RecordingCreated'])) {
      const d = e.data as Record<string, unknown>
      if (str(d.householdId)) reach(str(d.householdId)!, `reached its recording ${r}`)
      if (str(d.deviceId)) devices.add(str(d.deviceId)!)
    }
  }
  // a device used in the window belongs to the households that held it during the window: the
  // last to claim it before the window opened and any that claimed it within
  for (const device of devicesUsed) {
    const claims = (await log.events([`device:${device}`], { until }, ['DeviceClaimed'])).filter((e) => str((e.data as Record<string, unknown>).householdId))
    const before = claims.filter((e) => e.time < since).at(-1)
    for (const e of claims.filter((c) => c === before || c.time >= since)) reach(str((e.data as Record<string, unknown>).householdId)!, `used or reached its device ${device}`)
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
    const what = [...(reached.get(h) ?? [])].join('; ')
    for (const [accountId, role] of holders) notify(accountId, h, `${role} of household ${h}: between ${since} and ${until} the credential ${credential.kind}:${credential.value} ${what}`)
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

const ISSUED_TYPE: Record<PresignedUrl['kind'], string> = { upload: 'UploadUrlIssued', download: 'DownloadUrlIssued' }

/** the events showing the URL was used: on its recording, after it was issued and before it
 * expired; by URL id where both events carry one, else inferred (see UrlUse) */
async function urlUses(log: AuditLog, url: PresignedUrl): Promise<UrlUse[]> {
  const key: AuditKey = `recording:${url.recordingId}`
  const window = { since: url.issuedAt, until: new Date(Date.parse(url.until) + 1).toISOString() }
  const candidates = (await log.events([key], window, URL_USE_TYPES[url.kind])).filter((e) => e.position > url.position)
  // identical URLs (same recording, same second) share an id: a use of one is a use of either
  const twins = url.urlId ? (await log.events([key], {}, [ISSUED_TYPE[url.kind]])).filter((e) => (e.data as Record<string, unknown>).urlId === url.urlId).length : 0
  return candidates.flatMap((e): UrlUse[] => {
    const d = (e.data ?? {}) as Record<string, unknown>
    const id = str(d.urlId)
    if (url.urlId && id) return id === url.urlId ? [{ ...action(e), match: twins > 1 ? 'inferred' : 'url-id' }] : []
    // a download names the expiry of the URL it used
    const until = str(d.until)
    return !until || Date.parse(until) === Date.parse(url.until) ? [{ ...action(e), match: 'inferred' }] : []
  })
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
