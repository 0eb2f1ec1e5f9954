import t, { type Test } from 'tap'
import type { EventStore, NewEvent } from '../../../infra/eventstore/port.ts'
import { isKennelError } from '../../../infra/errors.ts'
import { createAuditProjection } from '../../../projections/audit/projection.ts'
import { buildBreachReport, parseCredential, parseInstant } from '../../../projections/breach/report.ts'
import type { ReadModelStore } from '../../../projections/readmodels/port.ts'
import { startProjectionRunner } from '../../../projections/runner.ts'
import { sandbox, testKeys } from '../helpers.ts'

// A scripted scenario following docs/EVENTS.md: two households, three toys; toy d1's certificate
// (serial ab01) is stolen and used to fetch recordings of household h1 and
// to upload one; toy d3 of household h2 is never touched.

/** presigned URLs in the scenario expire five minutes after the test runs */
const later = new Date(Date.now() + 300_000).toISOString()

async function scenario(store: EventStore): Promise<void> {
  const put = (stream: string, type: string, data: Record<string, unknown>, metadata: Record<string, unknown> = {}) =>
    store.append(stream, [{ type, data, metadata } satisfies NewEvent])
  const api = { actor: 'system:api' }
  await put('account-alice', 'AccountCreated', { accountId: 'alice' }, api)
  await put('account-bob', 'AccountCreated', { accountId: 'bob' }, api)
  await put('account-carol', 'AccountCreated', { accountId: 'carol' }, api)
  await put('account-dave', 'AccountCreated', { accountId: 'dave' }, api)
  await put('household-h1', 'HouseholdCreated', { householdId: 'h1', ownerAccountId: 'alice' }, { actor: 'account:alice' })
  await put('household-h1', 'MemberAdded', { householdId: 'h1', accountId: 'bob' }, { actor: 'account:alice' })
  await put('household-h1', 'MemberAdded', { householdId: 'h1', accountId: 'dave' }, { actor: 'account:alice' })
  await put('household-h1', 'MemberRemoved', { householdId: 'h1', accountId: 'dave' }, { actor: 'account:alice' })
  await put('household-h2', 'HouseholdCreated', { householdId: 'h2', ownerAccountId: 'carol' }, { actor: 'account:carol' })
  await put('device-d1', 'DeviceClaimed', { deviceId: 'd1', householdId: 'h1' }, { actor: 'account:alice' })
  await put('device-d2', 'DeviceClaimed', { deviceId: 'd2', householdId: 'h1' }, { actor: 'account:alice' })
  await put('device-d3', 'DeviceClaimed', { deviceId: 'd3', householdId: 'h2' }, { actor: 'account:carol' })
  await put('recording-r1', 'RecordingCreated', { recordingId: 'r1', householdId: 'h1', deviceId: 'd2' }, { actor: 'account:alice' })
  await put('recording-r2', 'RecordingCreated', { recordingId: 'r2', householdId: 'h1', deviceId: 'd1' }, { actor: 'account:bob' })
  await put('recording-r3', 'RecordingCreated', { recordingId: 'r3', householdId: 'h2', deviceId: 'd3' }, { actor: 'account:carol' })
  // the stolen certificate at work
  const thief = { actor: 'device:d1', credential: 'cert:ab01', sourceIp: '203.0.113.9' }
  await put('mqtt-d1', 'DeviceConnected', { deviceId: 'd1', serial: 'ab01', ip: '203.0.113.9' }, thief)
  await put('mqtt-d1', 'PublishAccepted', { deviceId: 'd1', topic: 'toys/d1/status', bytes: 10 }, thief)
  await put('recording-r1', 'DownloadUrlIssued', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later }, thief)
  await put('recording-r1', 'RecordingDownloaded', { recordingId: 'r1' }, { actor: 'anonymous', sourceIp: '203.0.113.9' })
  await put('recording-r2', 'DownloadUrlIssued', { recordingId: 'r2', householdId: 'h1', deviceId: 'd1', until: later }, thief)
  await put('recording-r4', 'RecordingCreated', { recordingId: 'r4', householdId: 'h1', deviceId: 'd1' }, thief)
  await put('recording-r4', 'UploadUrlIssued', { recordingId: 'r4', householdId: 'h1', deviceId: 'd1', until: later }, thief)
  await put('recording-r4', 'RecordingStored', { recordingId: 'r4', householdId: 'h1', deviceId: 'd1' }, { actor: 'system:api' })
  // the rightful owner's unrelated activity, and another household's toy
  await put('mqtt-d3', 'PublishAccepted', { deviceId: 'd3', topic: 'toys/d3/status', bytes: 10 }, { actor: 'device:d3', credential: 'cert:cd03' })
  await put('recording-r3', 'DownloadUrlIssued', { recordingId: 'r3', householdId: 'h2', deviceId: 'd3', until: later }, { actor: 'account:carol', credential: 'token:s-carol' })
}

t.test('given a stolen certificate, the breach report lists exactly what it touched and who to notify', async (t) => {
  const { store, readModels } = await sandbox(t)
  await scenario(store)
  const runner = await startProjectionRunner({ store, readModels, projections: [createAuditProjection({ signer: testKeys().signer, headEveryEvents: 1000, headEverySeconds: 86400 })] })
  await runner.caughtUp
  const since = new Date(Date.now() - 3600_000).toISOString()
  const until = new Date(Date.now() + 3600_000).toISOString()

  const report = await buildBreachReport({ store, readModels }, { credential: 'cert:AB:01', since, until, actor: 'cli:auditor', reportId: '11111111-2222-4333-8444-555555555555' })
  t.equal(report.credential, 'cert:ab01', 'serial normalised')
  t.same(report.actions.map((a) => a.type), ['DeviceConnected', 'PublishAccepted', 'DownloadUrlIssued', 'DownloadUrlIssued', 'RecordingCreated', 'UploadUrlIssued'])
  t.same(report.householdIds, ['h1'], 'only household h1')
  t.same(report.recordingIds, ['r1', 'r2', 'r4'], 'exactly the recordings it reached')
  t.same(report.deviceIds, ['d1', 'd2'], 'its own toy, and the toy that made r1')
  t.same(report.urls.map((u) => [u.kind, u.recordingId, u.used.map((x) => x.type)]), [['download', 'r1', ['RecordingDownloaded']], ['download', 'r2', []], ['upload', 'r4', ['RecordingStored']]])
  t.same(report.notifications.map((n) => n.accountId), ['alice', 'bob'], 'the current holders of h1; dave left, carol is untouched')
  t.match(report.notifications[0]!.reasons[0], /owner of household h1/)
  t.match(report.notifications[1]!.reasons[0], /member of household h1/)

  const recorded = await store.readStream('audit-reports')
  t.same(recorded.map((e) => e.type), ['BreachReportGenerated', 'AccountHolderNotificationRequired', 'AccountHolderNotificationRequired'])
  t.equal(recorded[0]!.metadata.actor, 'cli:auditor')
  t.same((recorded[0]!.data as { householdIds: string[] }).householdIds, ['h1'])

  const none = await buildBreachReport({ store, readModels }, { credential: 'cert:ab01', since: '2020-01-01T00:00:00Z', until: '2020-01-02T00:00:00Z', actor: 'cli:auditor' })
  t.same([none.actions.length, none.householdIds, none.notifications], [0, [], []], 'outside the window nothing is reported')
  await runner.stop()
})

t.test('an account credential covers its logins, sessions and what its actions touched', async (t) => {
  const { store, readModels } = await sandbox(t)
  await scenario(store)
  const runner = await startProjectionRunner({ store, readModels, projections: [createAuditProjection({ signer: testKeys().signer, headEveryEvents: 1000, headEverySeconds: 86400 })] })
  await runner.caughtUp
  const report = await buildBreachReport({ store, readModels }, { credential: 'account:carol', since: '2000-01-01T00:00:00Z', until: '2100-01-01T00:00:00Z', actor: 'cli:auditor' })
  t.same(report.householdIds, ['h2'])
  t.same(report.recordingIds, ['r3'])
  t.same(report.notifications.map((n) => n.accountId), ['carol'])
  await runner.stop()
})

t.test('a malformed credential is refused with KENNEL_ERR_CREDENTIAL_INVALID', async (t) => {
  for (const bad of ['cert:xyz', 'password:alice', 'device:', 'token:a b', 'nokind']) {
    t.ok(isKennelError((() => { try { parseCredential(bad) } catch (e) { return e } })(), 'KENNEL_ERR_CREDENTIAL_INVALID'), bad)
  }
})

/** the audit projection over the store, caught up */
async function audited(t: Test, store: EventStore, readModels: ReadModelStore): Promise<void> {
  const runner = await startProjectionRunner({ store, readModels, projections: [createAuditProjection({ signer: testKeys().signer, headEveryEvents: 1000, headEverySeconds: 86400 })] })
  t.teardown(() => runner.stop())
  await runner.caughtUp
}

const wholeTime = { since: '2000-01-01T00:00:00Z', until: '2100-01-01T00:00:00Z', actor: 'cli:auditor' }
const put = (store: EventStore, stream: string, type: string, data: Record<string, unknown>, metadata: Record<string, unknown> = {}) => store.append(stream, [{ type, data, metadata } satisfies NewEvent])
const refusal = async (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e)

t.test('a download is credited only to the URL used: another caller\'s download of the same recording is not', async (t) => {
  const { store, readModels } = await sandbox(t)
  await put(store, 'recording-r1', 'RecordingCreated', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1' }, { actor: 'account:alice' })
  // the thief's stolen session and alice's own each get a URL and each download with their own
  const thief = { actor: 'account:alice', credential: 'token:stolen' }
  const own = { actor: 'account:alice', credential: 'token:own' }
  await put(store, 'recording-r1', 'DownloadUrlIssued', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'url-thief' }, thief)
  await put(store, 'recording-r1', 'DownloadUrlIssued', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'url-own' }, own)
  await put(store, 'recording-r1', 'RecordingDownloaded', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'url-own' }, { actor: 'anonymous', sourceIp: '192.0.2.1' })
  await put(store, 'recording-r1', 'RecordingDownloaded', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'url-thief' }, { actor: 'anonymous', sourceIp: '203.0.113.9' })
  await audited(t, store, readModels)
  const downloads = (await store.readStream('recording-r1')).filter((e) => e.type === 'RecordingDownloaded').map((e) => e.position)

  const stolen = await buildBreachReport({ store, readModels }, { credential: 'token:stolen', ...wholeTime })
  t.same(stolen.urls.map((u) => [u.urlId, u.used.map((x) => [x.position, x.match])]), [['url-thief', [[downloads[1], 'url-id']]]], 'only the thief\'s own download, matched by URL id')
  const mine = await buildBreachReport({ store, readModels }, { credential: 'token:own', ...wholeTime })
  t.same(mine.urls.map((u) => [u.urlId, u.used.map((x) => [x.position, x.match])]), [['url-own', [[downloads[0], 'url-id']]]])
  t.same((await store.readStream('audit-reports')).filter((e) => e.type === 'BreachReportGenerated').map((e) => (e.data as { urlsUsed: number }).urlsUsed), [1, 1])
})

t.test('older events without URL ids are still matched, by window and expiry, and marked inferred', async (t) => {
  const { store, readModels } = await sandbox(t)
  const soon = new Date(Date.now() + 200_000).toISOString()
  await put(store, 'recording-r1', 'RecordingCreated', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1' }, { actor: 'account:alice' })
  await put(store, 'recording-r1', 'DownloadUrlIssued', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later }, { actor: 'account:alice', credential: 'token:old' })
  await put(store, 'recording-r1', 'DownloadUrlIssued', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: soon }, { actor: 'account:alice', credential: 'token:other' })
  await put(store, 'recording-r1', 'RecordingDownloaded', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later }, { actor: 'anonymous' })
  await put(store, 'recording-r1', 'RecordingDownloaded', { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: soon }, { actor: 'anonymous' })
  await audited(t, store, readModels)
  const report = await buildBreachReport({ store, readModels }, { credential: 'token:old', ...wholeTime })
  t.same(report.urls.map((u) => u.used.map((x) => [x.type, x.match])), [[['RecordingDownloaded', 'inferred']]], 'the download that names its expiry; the other URL\'s is not counted')
})

t.test('a credential that never appears in the event store is refused with KENNEL_ERR_NOT_FOUND and no report is written', async (t) => {
  const { store, readModels } = await sandbox(t)
  await scenario(store)
  await audited(t, store, readModels)
  for (const credential of ['device:nosuchdevice', 'account:00000000-0000-0000-0000-000000000000', 'token:nosuchtoken', 'cert:ffff']) {
    const err = await refusal(buildBreachReport({ store, readModels }, { credential, ...wholeTime }))
    t.ok(isKennelError(err, 'KENNEL_ERR_NOT_FOUND'), credential)
    t.match((err as Error).message, credential)
  }
  t.same(await store.readStream('audit-reports'), [], 'nothing written')
  // known, but idle in the window: a valid, empty report
  const idle = await buildBreachReport({ store, readModels }, { credential: 'account:dave', since: '2000-01-01T00:00:00Z', until: '2000-01-02T00:00:00Z', actor: 'cli:auditor' })
  t.same([idle.actions, idle.householdIds, idle.accountIds, idle.deviceIds, idle.notifications], [[], [], [], [], []])
  t.same((await store.readStream('audit-reports')).map((e) => e.type), ['BreachReportGenerated'])
})

t.test('window bounds must be exact instants: impossible dates and times without a zone are refused', async (t) => {
  const { store, readModels } = await sandbox(t)
  await scenario(store)
  await audited(t, store, readModels)
  for (const bad of ['2026-02-30T00:00:00Z', '2025-02-29', '2026-12-03T00:00:00', '2026-04-31T00:00:00Z', '2026-01-01T24:00:00Z', '2026-01-01T00:60:00Z', '2026-13-01T00:00:00Z', '2026-01-01T00:00:00+25:00', '2026-01-01 00:00:00Z', 'yesterday']) {
    const err = await refusal(buildBreachReport({ store, readModels }, { credential: 'cert:ab01', since: bad, until: '2100-01-01T00:00:00Z', actor: 'cli:auditor' }))
    t.ok(isKennelError(err, 'KENNEL_ERR_VALIDATION'), bad)
    t.match((err as Error).message, `since ${JSON.stringify(bad)}`, `the message names ${bad}`)
  }
  t.same(await store.readStream('audit-reports'), [], 'nothing written')
  t.equal(parseInstant('2024-02-29T23:30:00.5-01:30', 'since'), '2024-03-01T01:00:00.500Z', 'offsets are applied, leap days accepted')
  t.equal(parseInstant('2026-03-01', 'since'), '2026-03-01T00:00:00.000Z', 'a bare date is UTC midnight')
})

t.test('a device credential with no action in the window notifies no one; one that acted names only its household then', async (t) => {
  const { store, readModels } = await sandbox(t)
  await put(store, 'household-h1', 'HouseholdCreated', { householdId: 'h1', ownerAccountId: 'alice' }, { actor: 'account:alice' })
  await put(store, 'household-h2', 'HouseholdCreated', { householdId: 'h2', ownerAccountId: 'carol' }, { actor: 'account:carol' })
  await put(store, 'device-d1', 'DeviceEnrolled', { deviceId: 'd1' }, { actor: 'cli:admin' })
  await put(store, 'device-d1', 'DeviceClaimed', { deviceId: 'd1', householdId: 'h2' }, { actor: 'account:carol' })
  await put(store, 'device-d1', 'DeviceClaimed', { deviceId: 'd1', householdId: 'h1' }, { actor: 'account:alice' })
  await new Promise((r) => setTimeout(r, 20))
  const since = new Date().toISOString()
  await put(store, 'mqtt-d1', 'DeviceConnected', { deviceId: 'd1', serial: 'ab01' }, { actor: 'device:d1', credential: 'cert:ab01' })
  await audited(t, store, readModels)

  const idle = await buildBreachReport({ store, readModels }, { credential: 'device:d1', since: '2000-01-01T00:00:00Z', until: '2000-01-02T00:00:00Z', actor: 'cli:auditor' })
  t.same([idle.actions, idle.householdIds, idle.deviceIds, idle.notifications], [[], [], [], []], 'no household, device or notification without an action')
  const recorded = await store.readStream('audit-reports')
  t.same(recorded.map((e) => e.type), ['BreachReportGenerated'], 'no notification event')

  const used = await buildBreachReport({ store, readModels }, { credential: 'device:d1', since, until: '2100-01-01T00:00:00Z', actor: 'cli:auditor' })
  t.same(used.householdIds, ['h1'], 'the household holding the toy in the window, not its earlier owner h2')
  t.same(used.deviceIds, ['d1'])
  t.same(used.notifications, [{ accountId: 'alice', householdIds: ['h1'], reasons: [`owner of household h1: between ${used.since} and ${used.until} the credential device:d1 used or reached its device d1`] }])
})
