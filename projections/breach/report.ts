import { randomUUID } from 'node:crypto'
import { KennelError } from '../../infra/errors.ts'
import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import { AuditLog } from '../audit/log.ts'
import type { EntryLookups } from '../readmodels/port.ts'
import { contactStatus, type ContactResolver } from './contacts.ts'
import { credentialKeys, knownKeys, parseCredential, type Credential } from './credential.ts'
import { AUDIT_REPORTS_STREAM, type AccountHolderNotificationRequired, type BreachReportGenerated } from './events.ts'
import { revocationOf, type Revocation } from './revocation.ts'
import { action, issuedUrl, urlRefusals, urlUses, type PresignedUrl, type ReportedAction } from './urls.ts'

// Breach reconstruction (R16): given a credential and a time window, every action it performed
// (metadata.actor or metadata.credential, docs/EVENTS.md), every household, account, device and
// recording those actions touched, per household what was touched (topics, recordings, the
// presigned URLs it obtained, their uses and the refused attempts to use them, each flagged when it
// came after the credential was revoked), and the account holders to notify, each with the reason and the contact address to write to.
// The report and each notification are appended to `audit-reports` before the report is returned;
// the addresses are in the returned report only (contacts.ts).

/** a credential that never appears in the event store is an error, not an empty report: a typo
 * must not produce a report that clears a device or account nobody has (R16) */
async function assertKnown(store: EventStore, log: AuditLog, c: Credential): Promise<void> {
  for (const p of await log.positions(knownKeys(c))) {
    const [e] = await store.readAll({ after: p - 1, maxCount: 1 })
    // earlier reports name accounts too, and prove nothing about the credential
    if (e && e.stream !== AUDIT_REPORTS_STREAM) return
  }
  throw new KennelError(
    'KENNEL_ERR_NOT_FOUND',
    `the credential ${c.kind}:${c.value} does not appear in the event store`,
  )
}

const ISO_INSTANT = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}))?$/

const daysIn = (year: number, month: number): number =>
  month === 2
    ? year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
      ? 29
      : 28
    : [4, 6, 9, 11].includes(month)
      ? 30
      : 31

/** A window bound is one instant: a full ISO 8601 date-time with Z or an offset, or a bare date
 * (UTC midnight). Checked here, not by Date.parse, which rolls 2026-02-30 over to March 2 and
 * reads a time without a zone as local time (R16: both the CLI and the API come through here). */
export function parseInstant(raw: string, name: string): string {
  const bad = (why: string) => new KennelError('KENNEL_ERR_VALIDATION', `${name} ${JSON.stringify(raw)} ${why}`)
  const m = ISO_INSTANT.exec(raw)
  if (!m)
    throw bad(
      'is not an ISO 8601 date-time with Z or an offset (2026-03-01T00:00:00Z, 2026-03-01T01:00:00+01:00) or a date (2026-03-01)',
    )
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map((v) => Number(v ?? 0)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  const zone = m[8] ?? 'Z'
  if (month < 1 || month > 12) throw bad(`has no month ${month}`)
  if (day < 1 || day > daysIn(year, month))
    throw bad(`is not a calendar date: ${m[1]}-${m[2]} has ${daysIn(year, month)} days`)
  if (hour > 23 || minute > 59 || second > 59) throw bad('is not a time of day')
  const offsetMinutes =
    zone === 'Z' ? 0 : (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)))
  if (zone !== 'Z' && (Number(zone.slice(1, 3)) > 23 || Number(zone.slice(4, 6)) > 59))
    throw bad(`has no offset ${zone}`)
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

export type { PresignedUrl, ReportedAction, UrlRefusal, UrlUse } from './urls.ts'
export type { Revocation } from './revocation.ts'

export interface TopicUse {
  action: 'publish' | 'subscribe'
  /** the topic published to, or the filter subscribed to */
  topic: string
  /** the broker refused it */
  denied: boolean
  count: number
  first: string
  last: string
}

/** a flag on a household: a URL the credential obtained for it was used after the credential
 * was revoked (bytes stored or served: S3, which cannot refuse, or events from before the
 * embedded store refused) */
export const URL_USED_AFTER_REVOCATION = 'url-used-after-revocation'
/** a flag on a household: an attempt to use such a URL after the revocation was refused. Nothing
 * was served, but someone holds the URL the stolen credential obtained: the auditor must see it. */
export const URL_REFUSED_AFTER_REVOCATION = 'url-refused-after-revocation'

const usedAfterRevocation = (u: PresignedUrl): boolean => u.used.some((x) => x.afterRevocation)
const refusedAfterRevocation = (u: PresignedUrl): boolean => u.refused.some((x) => x.afterRevocation)

/** the household's flags, from the URLs obtained for it */
function urlFlags(urls: readonly PresignedUrl[]): string[] {
  return [
    ...(urls.some(usedAfterRevocation) ? [URL_USED_AFTER_REVOCATION] : []),
    ...(urls.some(refusedAfterRevocation) ? [URL_REFUSED_AFTER_REVOCATION] : []),
  ]
}

/** the refused attempts after the revocation, each folded event weighed by its `attempts` */
const refusedAttemptsAfterRevocation = (urls: readonly PresignedUrl[]): number =>
  urls.reduce((n, u) => n + u.refused.filter((x) => x.afterRevocation).reduce((m, x) => m + x.attempts, 0), 0)

export interface HouseholdExposure {
  householdId: string
  /** what the credential did that reached the household */
  reached: string[]
  /** the account holders at the end of the window, who are notified */
  holders: Array<{ accountId: string; role: 'owner' | 'member' }>
  /** the household's devices the credential used or reached */
  deviceIds: string[]
  topics: TopicUse[]
  recordingIds: string[]
  urls: PresignedUrl[]
  flags: string[]
}

export interface Notification {
  accountId: string
  /** the address to write to, unsealed for this report; `[erased]` once the person was erased;
   * null when the account has no address on record */
  contact: string | null
  householdIds: string[]
  reasons: string[]
}

export interface BreachReport {
  reportId: string
  credential: string
  since: string
  until: string
  throughPosition: number
  /** the first event that revoked the credential, if any */
  revocation: Revocation | null
  actions: ReportedAction[]
  householdIds: string[]
  accountIds: string[]
  deviceIds: string[]
  recordingIds: string[]
  /** every topic and filter the credential used, attributed to a household or not */
  topics: TopicUse[]
  urls: PresignedUrl[]
  households: HouseholdExposure[]
  notifications: Notification[]
}

export interface BreachReportDeps {
  store: EventStore
  /** the audit read model, caught up (the runner's `caughtUp` / `waitFor`) */
  readModels: EntryLookups
  /** the accounts' contact addresses, from the composition root */
  contacts: ContactResolver
}

const HOLDER_TYPES = ['HouseholdCreated', 'MemberAdded', 'MemberRemoved']
/** broker events naming a topic or filter the device used (broker/events.ts) */
const TOPIC_TYPES: Readonly<
  Record<string, { action: TopicUse['action']; field: 'topic' | 'filter'; denied: boolean }>
> = {
  PublishAccepted: { action: 'publish', field: 'topic', denied: false },
  PublishDenied: { action: 'publish', field: 'topic', denied: true },
  SubscriptionGranted: { action: 'subscribe', field: 'filter', denied: false },
  SubscriptionDenied: { action: 'subscribe', field: 'filter', denied: true },
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
const dataOf = (e: RecordedEvent): Record<string, unknown> => (e.data ?? {}) as Record<string, unknown>
const sorted = (s: Iterable<string>): string[] => [...s].sort()

/** what the credential reached in one household, while the report is built */
class Reached {
  readonly why = new Set<string>()
  readonly devices = new Set<string>()
  readonly recordings = new Set<string>()
  readonly topics = new Map<string, TopicUse>()
  readonly urls: PresignedUrl[] = []
}

/** counts topic uses, keyed by action, topic and outcome */
function countTopic(topics: Map<string, TopicUse>, e: RecordedEvent): void {
  const kind = TOPIC_TYPES[e.type]
  const topic = kind && str(dataOf(e)[kind.field])
  if (!kind || topic === undefined) return
  const key = JSON.stringify([kind.action, topic, kind.denied])
  const t = topics.get(key)
  if (t) topics.set(key, { ...t, count: t.count + 1, last: e.time })
  else topics.set(key, { action: kind.action, topic, denied: kind.denied, count: 1, first: e.time, last: e.time })
}

const topicList = (topics: Map<string, TopicUse>): TopicUse[] =>
  [...topics.values()].sort(
    (a, b) => a.action.localeCompare(b.action) || a.topic.localeCompare(b.topic) || Number(a.denied) - Number(b.denied),
  )

/** Build the report, append it and its notifications to `audit-reports`, and return it. */
export async function buildBreachReport(deps: BreachReportDeps, request: BreachReportRequest): Promise<BreachReport> {
  const credential = parseCredential(request.credential)
  const since = parseInstant(request.since, 'since')
  const until = parseInstant(request.until, 'until')
  if (since >= until) throw new KennelError('KENNEL_ERR_VALIDATION', `since (${since}) must be before until (${until})`)
  const log = new AuditLog(deps.store, deps.readModels)
  await assertKnown(deps.store, log, credential)
  const throughPosition = await deps.store.headPosition()
  const actions = (await log.events(credentialKeys(credential), { since, until })).filter(
    (e) => e.stream !== AUDIT_REPORTS_STREAM,
  )
  const revocation = await revocationOf(log, credential)

  const accounts = new Set<string>()
  const devices = new Set<string>()
  const recordings = new Set<string>()
  /** devices the credential used or named in its actions: their households were reached */
  const devicesUsed = new Set<string>()
  // a credential with no action in the window touched nothing, not even its own device or account
  if (credential.kind === 'device' && actions.length > 0) devicesUsed.add(credential.value)
  if (credential.kind === 'account' && actions.length > 0) accounts.add(credential.value)
  const reached = new Map<string, Reached>()
  const reach = (h: string, why: string): Reached => {
    const r = reached.get(h) ?? new Reached()
    r.why.add(why)
    reached.set(h, r)
    return r
  }
  const urls: PresignedUrl[] = []
  const topics = new Map<string, TopicUse>()
  for (const e of actions) {
    const d = dataOf(e)
    const add = (set: Set<string>, v: unknown) => str(v) && set.add(str(v)!)
    if (str(d.householdId)) reach(str(d.householdId)!, 'acted on the household')
    add(accounts, d.accountId)
    add(accounts, d.ownerAccountId)
    add(devicesUsed, d.deviceId)
    add(recordings, d.recordingId)
    countTopic(topics, e)
    const url = issuedUrl(e)
    if (url) urls.push(url)
  }
  for (const d of devicesUsed) devices.add(d)
  for (const url of urls) {
    url.used = await urlUses(log, url, revocation)
    url.refused = await urlRefusals(log, url, revocation)
  }

  // a recording belongs to the household named when it was created
  const recordingHousehold = new Map<string, string>()
  for (const r of [...recordings]) {
    for (const e of await log.events([`recording:${r}`], { until }, ['RecordingCreated'])) {
      const d = dataOf(e)
      if (str(d.householdId)) {
        recordingHousehold.set(r, str(d.householdId)!)
        reach(str(d.householdId)!, `reached its recording ${r}`).recordings.add(r)
      }
      if (str(d.deviceId)) devices.add(str(d.deviceId)!)
    }
  }
  // a device used in the window belongs to the households that held it during the window: the
  // last to claim it before the window opened and any that claimed it within. Its topics count
  // for each of them: a toy's subscription outlives a change of household.
  const deviceHouseholds = new Map<string, string[]>()
  for (const device of devicesUsed) {
    const claims = (await log.events([`device:${device}`], { until }, ['DeviceClaimed'])).filter((e) =>
      str(dataOf(e).householdId),
    )
    const before = claims.filter((e) => e.time < since).at(-1)
    const holders = claims.filter((c) => c === before || c.time >= since).map((e) => str(dataOf(e).householdId)!)
    deviceHouseholds.set(device, holders)
    for (const h of holders) reach(h, `used or reached its device ${device}`).devices.add(device)
  }
  for (const e of actions) {
    const device = str(dataOf(e).deviceId)
    if (device && TOPIC_TYPES[e.type])
      for (const h of deviceHouseholds.get(device) ?? []) countTopic(reached.get(h)!.topics, e)
  }
  // the household an issuance names was reached above, and so was a recording's
  for (const url of urls) {
    const h = url.householdId ?? recordingHousehold.get(url.recordingId)
    if (h === undefined) continue
    url.householdId = h
    reached.get(h)!.urls.push(url)
  }

  const notifications = new Map<string, Omit<Notification, 'contact'>>()
  const notify = (accountId: string, householdId: string | undefined, reason: string) => {
    const n = notifications.get(accountId) ?? { accountId, householdIds: [], reasons: [] }
    if (householdId && !n.householdIds.includes(householdId)) n.householdIds.push(householdId)
    if (!n.reasons.includes(reason)) n.reasons.push(reason)
    notifications.set(accountId, n)
  }
  const households: HouseholdExposure[] = []
  for (const h of sorted(reached.keys())) {
    const holders = new Map<string, 'owner' | 'member'>()
    for (const e of await log.events([`household:${h}`], { until }, HOLDER_TYPES)) {
      const d = dataOf(e)
      const who = str(d.ownerAccountId) ?? str(d.accountId)
      if (!who) continue
      if (e.type === 'MemberRemoved') holders.delete(who)
      else holders.set(who, e.type === 'HouseholdCreated' ? 'owner' : 'member')
    }
    const r = reached.get(h)!
    const what = [...r.why].join('; ')
    for (const [accountId, role] of holders)
      notify(
        accountId,
        h,
        `${role} of household ${h}: between ${since} and ${until} the credential ${credential.kind}:${credential.value} ${what}`,
      )
    households.push({
      householdId: h,
      reached: [...r.why],
      holders: [...holders]
        .map(([accountId, role]) => ({ accountId, role }))
        .sort((a, b) => a.accountId.localeCompare(b.accountId)),
      deviceIds: sorted(r.devices),
      topics: topicList(r.topics),
      recordingIds: sorted(r.recordings),
      urls: r.urls,
      flags: urlFlags(r.urls),
    })
  }
  for (const a of sorted(accounts))
    notify(
      a,
      undefined,
      `account ${a} was used or touched by the credential ${credential.kind}:${credential.value} between ${since} and ${until}`,
    )

  const notified = [...notifications.values()].sort((a, b) => a.accountId.localeCompare(b.accountId))
  const contacts = await deps.contacts(notified.map((n) => n.accountId))
  const report: BreachReport = {
    reportId: request.reportId ?? randomUUID(),
    credential: `${credential.kind}:${credential.value}`,
    since,
    until,
    throughPosition,
    revocation: revocation ?? null,
    actions: actions.map(action),
    householdIds: households.map((h) => h.householdId),
    accountIds: sorted(accounts),
    deviceIds: sorted(devices),
    recordingIds: sorted(recordings),
    topics: topicList(topics),
    urls,
    households,
    notifications: notified.map((n) => ({
      accountId: n.accountId,
      contact: contacts.get(n.accountId) ?? null,
      householdIds: n.householdIds.sort(),
      reasons: n.reasons,
    })),
  }
  await recordReport(deps.store, report, request.actor)
  return report
}

/** the report as events: ids, positions and topics, never an address (events.ts) */
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
      urlsUsedAfterRevocation: r.urls.filter(usedAfterRevocation).length,
      urlsRefusedAfterRevocation: r.urls.filter(refusedAfterRevocation).length,
      refusedAttemptsAfterRevocation: refusedAttemptsAfterRevocation(r.urls),
      ...(r.revocation
        ? { revocation: { type: r.revocation.type, id: r.revocation.id, position: r.revocation.position } }
        : {}),
      households: r.households.map((h) => ({
        householdId: h.householdId,
        accountIds: h.holders.map((x) => x.accountId),
        deviceIds: h.deviceIds,
        topics: h.topics.map(({ action, topic, denied, count }) => ({ action, topic, denied, count })),
        recordingIds: h.recordingIds,
        urls: h.urls.map((u) => ({
          kind: u.kind,
          recordingId: u.recordingId,
          ...(u.urlId ? { urlId: u.urlId } : {}),
          issuedAt: u.position,
          usedAt: u.used.map((x) => x.position),
          usedAfterRevocation: u.used.filter((x) => x.afterRevocation).map((x) => x.position),
          refusedAt: u.refused.map((x) => x.position),
          refusedAfterRevocation: u.refused.filter((x) => x.afterRevocation).map((x) => x.position),
        })),
        flags: h.flags,
      })),
      notifications: r.notifications.length,
    },
  }
  const notices: AccountHolderNotificationRequired[] = r.notifications.map((n) => ({
    type: 'AccountHolderNotificationRequired',
    data: {
      reportId: r.reportId,
      accountId: n.accountId,
      householdIds: n.householdIds,
      reasons: n.reasons,
      contact: contactStatus(n.contact ?? undefined),
    },
  }))
  await store.append(
    AUDIT_REPORTS_STREAM,
    [generated, ...notices].map((e) => ({ ...e, metadata: { actor, correlationId: r.reportId } })),
  )
}
