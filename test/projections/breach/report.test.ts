import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { EmailProtector } from '../../../api/accounts/personal-data.ts'
import { accountContacts } from '../../../bin/breach-contacts.ts'
import { KeyRing, loadMasterKey } from '../../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../../infra/keystore/files.ts'
import { loadConfig } from '../../../infra/config.ts'
import type { EventStore, NewEvent } from '../../../infra/eventstore/port.ts'
import { isKennelError } from '../../../infra/errors.ts'
import { createAuditProjection } from '../../../projections/audit/projection.ts'
import { parseCredential } from '../../../projections/breach/credential.ts'
import { breachReportCsv } from '../../../projections/breach/csv.ts'
import {
  buildBreachReport as build,
  parseInstant,
  type BreachReportRequest,
} from '../../../projections/breach/report.ts'
import type { EntryLookups, ReadModelStore } from '../../../projections/readmodels/port.ts'
import { startProjectionRunner } from '../../../projections/runner.ts'
import { sandbox, testKeys } from '../helpers.ts'
import { later, put, stolenToy } from './stolen-toy.ts'

// A scripted scenario following docs/EVENTS.md: two households, three toys; toy d1's certificate
// (serial ab01) is stolen and used to fetch recordings of household h1 and
// to upload one; toy d3 of household h2 is never touched.

async function scenario(store: EventStore): Promise<void> {
  const put = (stream: string, type: string, data: Record<string, unknown>, metadata: Record<string, unknown> = {}) =>
    store.append(stream, [{ type, data, metadata } satisfies NewEvent])
  const api = { actor: 'system:api' }
  await put('account-alice', 'AccountCreated', { accountId: 'alice' }, api)
  await put('account-bob', 'AccountCreated', { accountId: 'bob' }, api)
  await put('account-carol', 'AccountCreated', { accountId: 'carol' }, api)
  await put('account-dave', 'AccountCreated', { accountId: 'dave' }, api)
  await put(
    'household-h1',
    'HouseholdCreated',
    { householdId: 'h1', ownerAccountId: 'alice' },
    { actor: 'account:alice' },
  )
  await put('household-h1', 'MemberAdded', { householdId: 'h1', accountId: 'bob' }, { actor: 'account:alice' })
  await put('household-h1', 'MemberAdded', { householdId: 'h1', accountId: 'dave' }, { actor: 'account:alice' })
  await put('household-h1', 'MemberRemoved', { householdId: 'h1', accountId: 'dave' }, { actor: 'account:alice' })
  await put(
    'household-h2',
    'HouseholdCreated',
    { householdId: 'h2', ownerAccountId: 'carol' },
    { actor: 'account:carol' },
  )
  await put('device-d1', 'DeviceClaimed', { deviceId: 'd1', householdId: 'h1' }, { actor: 'account:alice' })
  await put('device-d2', 'DeviceClaimed', { deviceId: 'd2', householdId: 'h1' }, { actor: 'account:alice' })
  await put('device-d3', 'DeviceClaimed', { deviceId: 'd3', householdId: 'h2' }, { actor: 'account:carol' })
  await put(
    'recording-r1',
    'RecordingCreated',
    { recordingId: 'r1', householdId: 'h1', deviceId: 'd2' },
    { actor: 'account:alice' },
  )
  await put(
    'recording-r2',
    'RecordingCreated',
    { recordingId: 'r2', householdId: 'h1', deviceId: 'd1' },
    { actor: 'account:bob' },
  )
  await put(
    'recording-r3',
    'RecordingCreated',
    { recordingId: 'r3', householdId: 'h2', deviceId: 'd3' },
    { actor: 'account:carol' },
  )
  // the stolen certificate at work
  const thief = { actor: 'device:d1', credential: 'cert:ab01', sourceIp: '203.0.113.9' }
  await put('mqtt-d1', 'DeviceConnected', { deviceId: 'd1', serial: 'ab01', ip: '203.0.113.9' }, thief)
  await put('mqtt-d1', 'PublishAccepted', { deviceId: 'd1', topic: 'toys/d1/status', bytes: 10 }, thief)
  await put(
    'recording-r1',
    'DownloadUrlIssued',
    { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later },
    thief,
  )
  await put(
    'recording-r1',
    'RecordingDownloaded',
    { recordingId: 'r1' },
    { actor: 'anonymous', sourceIp: '203.0.113.9' },
  )
  await put(
    'recording-r2',
    'DownloadUrlIssued',
    { recordingId: 'r2', householdId: 'h1', deviceId: 'd1', until: later },
    thief,
  )
  await put('recording-r4', 'RecordingCreated', { recordingId: 'r4', householdId: 'h1', deviceId: 'd1' }, thief)
  await put(
    'recording-r4',
    'UploadUrlIssued',
    { recordingId: 'r4', householdId: 'h1', deviceId: 'd1', until: later },
    thief,
  )
  await put(
    'recording-r4',
    'RecordingStored',
    { recordingId: 'r4', householdId: 'h1', deviceId: 'd1' },
    { actor: 'system:api' },
  )
  // the rightful owner's unrelated activity, and another household's toy
  await put(
    'mqtt-d3',
    'PublishAccepted',
    { deviceId: 'd3', topic: 'toys/d3/status', bytes: 10 },
    { actor: 'device:d3', credential: 'cert:cd03' },
  )
  await put(
    'recording-r3',
    'DownloadUrlIssued',
    { recordingId: 'r3', householdId: 'h2', deviceId: 'd3', until: later },
    { actor: 'account:carol', credential: 'token:s-carol' },
  )
}

/** a sandbox whose data dir holds the master key and the person keys, and the report built with
 * the contact resolver `kennel start` wires (bin/breach-contacts.ts) */
async function world(t: Test) {
  const sb = await sandbox(t)
  const config = loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: sb.dir })
  const masterKey = loadMasterKey(config)
  const personKeys = () => new KeyRing(fileKeyStore(config.dataDir), masterKey, 'person')
  const breachReport = (request: BreachReportRequest) =>
    build(
      { store: sb.store, readModels: sb.readModels, contacts: accountContacts({ config, store: sb.store }) },
      request,
    )
  return { ...sb, config, personKeys, emails: new EmailProtector(masterKey, personKeys()), breachReport }
}

t.test('given a stolen certificate, the breach report lists exactly what it touched and who to notify', async (t) => {
  const { store, readModels, breachReport } = await world(t)
  await scenario(store)
  const runner = await startProjectionRunner({
    store,
    readModels,
    projections: [createAuditProjection({ signer: testKeys().signer, headEveryEvents: 1000, headEverySeconds: 86400 })],
  })
  await runner.caughtUp
  const since = new Date(Date.now() - 3600_000).toISOString()
  const until = new Date(Date.now() + 3600_000).toISOString()

  const report = await breachReport({
    credential: 'cert:AB:01',
    since,
    until,
    actor: 'cli:auditor',
    reportId: '11111111-2222-4333-8444-555555555555',
  })
  t.equal(report.credential, 'cert:ab01', 'serial normalised')
  t.same(
    report.actions.map((a) => a.type),
    [
      'DeviceConnected',
      'PublishAccepted',
      'DownloadUrlIssued',
      'DownloadUrlIssued',
      'RecordingCreated',
      'UploadUrlIssued',
    ],
  )
  t.same(report.householdIds, ['h1'], 'only household h1')
  t.same(report.recordingIds, ['r1', 'r2', 'r4'], 'exactly the recordings it reached')
  t.same(report.deviceIds, ['d1', 'd2'], 'its own toy, and the toy that made r1')
  t.same(
    report.urls.map((u) => [u.kind, u.recordingId, u.used.map((x) => x.type)]),
    [
      ['download', 'r1', ['RecordingDownloaded']],
      ['download', 'r2', []],
      ['upload', 'r4', ['RecordingStored']],
    ],
  )
  t.same(
    report.notifications.map((n) => n.accountId),
    ['alice', 'bob'],
    'the current holders of h1; dave left, carol is untouched',
  )
  t.match(report.notifications[0]!.reasons[0], /owner of household h1/)
  t.match(report.notifications[1]!.reasons[0], /member of household h1/)

  const recorded = await store.readStream('audit-reports')
  t.same(
    recorded.map((e) => e.type),
    ['BreachReportGenerated', 'AccountHolderNotificationRequired', 'AccountHolderNotificationRequired'],
  )
  t.equal(recorded[0]!.metadata.actor, 'cli:auditor')
  t.same((recorded[0]!.data as { householdIds: string[] }).householdIds, ['h1'])

  const none = await breachReport({
    credential: 'cert:ab01',
    since: '2020-01-01T00:00:00Z',
    until: '2020-01-02T00:00:00Z',
    actor: 'cli:auditor',
  })
  t.same(
    [none.actions.length, none.householdIds, none.notifications],
    [0, [], []],
    'outside the window nothing is reported',
  )
  await runner.stop()
})

t.test('an account credential covers its logins, sessions and what its actions touched', async (t) => {
  const { store, readModels, breachReport } = await world(t)
  await scenario(store)
  const runner = await startProjectionRunner({
    store,
    readModels,
    projections: [createAuditProjection({ signer: testKeys().signer, headEveryEvents: 1000, headEverySeconds: 86400 })],
  })
  await runner.caughtUp
  const report = await breachReport({
    credential: 'account:carol',
    since: '2000-01-01T00:00:00Z',
    until: '2100-01-01T00:00:00Z',
    actor: 'cli:auditor',
  })
  t.same(report.householdIds, ['h2'])
  t.same(report.recordingIds, ['r3'])
  t.same(
    report.notifications.map((n) => n.accountId),
    ['carol'],
  )
  await runner.stop()
})

t.test('a malformed credential is refused with KENNEL_ERR_CREDENTIAL_INVALID', async (t) => {
  for (const bad of ['cert:xyz', 'password:alice', 'device:', 'token:a b', 'nokind']) {
    t.ok(
      isKennelError(
        (() => {
          try {
            parseCredential(bad)
          } catch (e) {
            return e
          }
        })(),
        'KENNEL_ERR_CREDENTIAL_INVALID',
      ),
      bad,
    )
  }
})

/** the audit projection over the store, caught up; it follows later appends (`waitFor`) */
async function audited(
  t: Test,
  store: EventStore,
  readModels: ReadModelStore & EntryLookups,
): Promise<Awaited<ReturnType<typeof startProjectionRunner>>> {
  const runner = await startProjectionRunner({
    store,
    readModels,
    projections: [createAuditProjection({ signer: testKeys().signer, headEveryEvents: 1000, headEverySeconds: 86400 })],
  })
  t.teardown(() => runner.stop())
  await runner.caughtUp
  return runner
}

const wholeTime = { since: '2000-01-01T00:00:00Z', until: '2100-01-01T00:00:00Z', actor: 'cli:auditor' }
const refusal = async (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  )

t.test(
  "a download is credited only to the URL used: another caller's download of the same recording is not",
  async (t) => {
    const { store, readModels, breachReport } = await world(t)
    await put(
      store,
      'recording-r1',
      'RecordingCreated',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1' },
      { actor: 'account:alice' },
    )
    // the thief's stolen session and alice's own each get a URL and each download with their own
    const thief = { actor: 'account:alice', credential: 'token:stolen' }
    const own = { actor: 'account:alice', credential: 'token:own' }
    await put(
      store,
      'recording-r1',
      'DownloadUrlIssued',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'url-thief' },
      thief,
    )
    await put(
      store,
      'recording-r1',
      'DownloadUrlIssued',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'url-own' },
      own,
    )
    await put(
      store,
      'recording-r1',
      'RecordingDownloaded',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'url-own' },
      { actor: 'anonymous', sourceIp: '192.0.2.1' },
    )
    await put(
      store,
      'recording-r1',
      'RecordingDownloaded',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'url-thief' },
      { actor: 'anonymous', sourceIp: '203.0.113.9' },
    )
    await audited(t, store, readModels)
    const downloads = (await store.readStream('recording-r1'))
      .filter((e) => e.type === 'RecordingDownloaded')
      .map((e) => e.position)

    const stolen = await breachReport({ credential: 'token:stolen', ...wholeTime })
    t.same(
      stolen.urls.map((u) => [u.urlId, u.used.map((x) => [x.position, x.match])]),
      [['url-thief', [[downloads[1], 'url-id']]]],
      "only the thief's own download, matched by URL id",
    )
    const mine = await breachReport({ credential: 'token:own', ...wholeTime })
    t.same(
      mine.urls.map((u) => [u.urlId, u.used.map((x) => [x.position, x.match])]),
      [['url-own', [[downloads[0], 'url-id']]]],
    )
    t.same(
      (await store.readStream('audit-reports'))
        .filter((e) => e.type === 'BreachReportGenerated')
        .map((e) => (e.data as { urlsUsed: number }).urlsUsed),
      [1, 1],
    )
  },
)

t.test('older events without URL ids are still matched, by window and expiry, and marked inferred', async (t) => {
  const { store, readModels, breachReport } = await world(t)
  const soon = new Date(Date.now() + 200_000).toISOString()
  await put(
    store,
    'recording-r1',
    'RecordingCreated',
    { recordingId: 'r1', householdId: 'h1', deviceId: 'd1' },
    { actor: 'account:alice' },
  )
  await put(
    store,
    'recording-r1',
    'DownloadUrlIssued',
    { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later },
    { actor: 'account:alice', credential: 'token:old' },
  )
  await put(
    store,
    'recording-r1',
    'DownloadUrlIssued',
    { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: soon },
    { actor: 'account:alice', credential: 'token:other' },
  )
  await put(
    store,
    'recording-r1',
    'RecordingDownloaded',
    { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later },
    { actor: 'anonymous' },
  )
  await put(
    store,
    'recording-r1',
    'RecordingDownloaded',
    { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: soon },
    { actor: 'anonymous' },
  )
  // refusals recorded after an upgrade: one of a download URL with the old URL's expiry, one of an upload URL with the same expiry
  const refusal = (method: string, urlId: string) => ({
    recordingId: 'r1',
    householdId: 'h1',
    deviceId: 'd1',
    method,
    urlId,
    until: later,
    code: 'KENNEL_ERR_URL_REVOKED',
    reason: 'session-ended',
    attempts: 1,
  })
  await put(store, 'recording-r1', 'RecordingUrlRefused', refusal('PUT', 'u-upload'), { actor: 'anonymous' })
  await put(store, 'recording-r1', 'RecordingUrlRefused', refusal('GET', 'u-download'), { actor: 'anonymous' })
  await audited(t, store, readModels)
  const report = await breachReport({ credential: 'token:old', ...wholeTime })
  t.same(
    report.urls.map((u) => u.used.map((x) => [x.type, x.match])),
    [[['RecordingDownloaded', 'inferred']]],
    "the download that names its expiry; the other URL's is not counted",
  )
  const refusedGet = (await store.readStream('recording-r1')).find(
    (e) => e.type === 'RecordingUrlRefused' && (e.data as { method: string }).method === 'GET',
  )!
  t.same(
    report.urls.map((u) => u.refused.map((x) => [x.position, x.match])),
    [[[refusedGet.position, 'inferred']]],
    "the refused GET with its expiry, inferred; not the upload URL's PUT",
  )
})

t.test(
  'a credential that never appears in the event store is refused with KENNEL_ERR_NOT_FOUND and no report is written',
  async (t) => {
    const { store, readModels, breachReport } = await world(t)
    await scenario(store)
    await audited(t, store, readModels)
    for (const credential of [
      'device:nosuchdevice',
      'account:00000000-0000-0000-0000-000000000000',
      'token:nosuchtoken',
      'cert:ffff',
    ]) {
      const err = await refusal(breachReport({ credential, ...wholeTime }))
      t.ok(isKennelError(err, 'KENNEL_ERR_NOT_FOUND'), credential)
      t.match((err as Error).message, credential)
    }
    t.same(await store.readStream('audit-reports'), [], 'nothing written')
    // known, but idle in the window: a valid, empty report
    const idle = await breachReport({
      credential: 'account:dave',
      since: '2000-01-01T00:00:00Z',
      until: '2000-01-02T00:00:00Z',
      actor: 'cli:auditor',
    })
    t.same([idle.actions, idle.householdIds, idle.accountIds, idle.deviceIds, idle.notifications], [[], [], [], [], []])
    t.same(
      (await store.readStream('audit-reports')).map((e) => e.type),
      ['BreachReportGenerated'],
    )
  },
)

t.test('window bounds must be exact instants: impossible dates and times without a zone are refused', async (t) => {
  const { store, readModels, breachReport } = await world(t)
  await scenario(store)
  await audited(t, store, readModels)
  for (const bad of [
    '2026-02-30T00:00:00Z',
    '2025-02-29',
    '2026-12-03T00:00:00',
    '2026-04-31T00:00:00Z',
    '2026-01-01T24:00:00Z',
    '2026-01-01T00:60:00Z',
    '2026-13-01T00:00:00Z',
    '2026-01-01T00:00:00+25:00',
    '2026-01-01 00:00:00Z',
    'yesterday',
  ]) {
    const err = await refusal(
      breachReport({ credential: 'cert:ab01', since: bad, until: '2100-01-01T00:00:00Z', actor: 'cli:auditor' }),
    )
    t.ok(isKennelError(err, 'KENNEL_ERR_VALIDATION'), bad)
    t.match((err as Error).message, `since ${JSON.stringify(bad)}`, `the message names ${bad}`)
  }
  t.same(await store.readStream('audit-reports'), [], 'nothing written')
  t.equal(
    parseInstant('2024-02-29T23:30:00.5-01:30', 'since'),
    '2024-03-01T01:00:00.500Z',
    'offsets are applied, leap days accepted',
  )
  t.equal(parseInstant('2026-03-01', 'since'), '2026-03-01T00:00:00.000Z', 'a bare date is UTC midnight')
})

t.test(
  'a device credential with no action in the window notifies no one; one that acted names only its household then',
  async (t) => {
    const { store, readModels, breachReport } = await world(t)
    await put(
      store,
      'household-h1',
      'HouseholdCreated',
      { householdId: 'h1', ownerAccountId: 'alice' },
      { actor: 'account:alice' },
    )
    await put(
      store,
      'household-h2',
      'HouseholdCreated',
      { householdId: 'h2', ownerAccountId: 'carol' },
      { actor: 'account:carol' },
    )
    await put(store, 'device-d1', 'DeviceEnrolled', { deviceId: 'd1' }, { actor: 'cli:admin' })
    await put(store, 'device-d1', 'DeviceClaimed', { deviceId: 'd1', householdId: 'h2' }, { actor: 'account:carol' })
    await put(store, 'device-d1', 'DeviceClaimed', { deviceId: 'd1', householdId: 'h1' }, { actor: 'account:alice' })
    await new Promise((r) => setTimeout(r, 20))
    const since = new Date().toISOString()
    await put(
      store,
      'mqtt-d1',
      'DeviceConnected',
      { deviceId: 'd1', serial: 'ab01' },
      { actor: 'device:d1', credential: 'cert:ab01' },
    )
    await audited(t, store, readModels)

    const idle = await breachReport({
      credential: 'device:d1',
      since: '2000-01-01T00:00:00Z',
      until: '2000-01-02T00:00:00Z',
      actor: 'cli:auditor',
    })
    t.same(
      [idle.actions, idle.householdIds, idle.deviceIds, idle.notifications],
      [[], [], [], []],
      'no household, device or notification without an action',
    )
    const recorded = await store.readStream('audit-reports')
    t.same(
      recorded.map((e) => e.type),
      ['BreachReportGenerated'],
      'no notification event',
    )

    const used = await breachReport({
      credential: 'device:d1',
      since,
      until: '2100-01-01T00:00:00Z',
      actor: 'cli:auditor',
    })
    t.same(used.householdIds, ['h1'], 'the household holding the toy in the window, not its earlier owner h2')
    t.same(used.deviceIds, ['d1'])
    t.same(used.notifications, [
      {
        accountId: 'alice',
        contact: null,
        householdIds: ['h1'],
        reasons: [
          `owner of household h1: between ${used.since} and ${used.until} the credential device:d1 used or reached its device d1`,
        ],
      },
    ])
  },
)

t.test(
  "a stolen toy credential: the report names the holders' sign-up addresses, what it touched per household, and the URL used after revocation",
  async (t) => {
    const { dir, store, readModels, breachReport, emails, personKeys } = await world(t)
    await stolenToy(store, emails)
    await audited(t, store, readModels)
    const revoked = (await store.readStream('device-d1')).find((e) => e.type === 'DeviceRevoked')!
    const downloads = [...(await store.readStream('recording-r1')), ...(await store.readStream('recording-r2'))]
      .filter((e) => e.type === 'RecordingDownloaded')
      .map((e) => e.position)

    for (const credential of ['device:d1', 'cert:ab01']) {
      const report = await breachReport({ credential, ...wholeTime })
      t.match(
        report.revocation,
        { type: 'DeviceRevoked', position: revoked.position },
        `${credential}: revoked with its toy`,
      )
      t.same(
        report.notifications.map((n) => [n.accountId, n.contact, n.householdIds]),
        [
          ['alice', 'alice.parent@example.org', ['h1']],
          ['bob', '+bob@example.org', ['h1']],
        ],
        `${credential}: the holders of h1, by the address they signed up with`,
      )
      t.same(
        report.households.map((h) => h.householdId),
        ['h1'],
        "carol's household is not touched",
      )
      const [h1] = report.households
      t.same(h1!.holders, [
        { accountId: 'alice', role: 'owner' },
        { accountId: 'bob', role: 'member' },
      ])
      t.same(h1!.deviceIds, ['d1'])
      t.same(
        h1!.topics.map((x) => [x.action, x.topic, x.denied, x.count]),
        [
          ['publish', 'toys/d1/status', false, 2],
          ['publish', 'toys/d2/x,"y"', true, 1],
          ['subscribe', 'toys/d1/inbox/#', false, 1],
        ],
        'each topic and filter, counted, the denied one marked',
      )
      t.same(h1!.recordingIds, ['r1', 'r2'])
      t.same(
        h1!.urls.map((u) => [u.recordingId, u.urlId, u.used.map((x) => [x.position, x.afterRevocation])]),
        [
          ['r1', 'u1', [[downloads[0], false]]],
          ['r2', 'u2', [[downloads[1], true]]],
        ],
        "r2's URL was used after the revocation",
      )
      t.same(h1!.flags, ['url-used-after-revocation'])

      const csv = breachReportCsv(report)
      const lines = csv.split('\r\n')
      t.equal(lines.at(-1), '', 'CRLF after every row')
      t.equal(
        lines[0],
        'report_id,credential,since,until,account_id,contact,household_id,role,devices,topics,recordings,urls_issued,urls_used,urls_used_after_revocation,urls_refused_after_revocation,flags,touched',
      )
      const topics = '"publish toys/d1/status (2); publish toys/d2/x,""y"" (1, denied); subscribe toys/d1/inbox/# (1)"'
      const touched =
        'acted on the household; reached its recording r1; reached its recording r2; used or reached its device d1'
      const row = (account: string, contact: string, role: string) =>
        [
          report.reportId,
          report.credential,
          report.since,
          report.until,
          account,
          contact,
          'h1',
          role,
          'd1',
          topics,
          'r1; r2',
          '2',
          '2',
          '1',
          '0',
          'url-used-after-revocation',
          touched,
        ].join(',')
      t.same(
        lines.slice(1, -1),
        [row('alice', 'alice.parent@example.org', 'owner'), row('bob', "'+bob@example.org", 'member')],
        'one row per holder; the quoted topic list; the address that starts like a formula is neutralised',
      )
    }

    // erasure shreds the person's key: the address is gone from every later report
    await personKeys().shred('alice')
    const after = await breachReport({ credential: 'device:d1', ...wholeTime })
    t.same(
      after.notifications.map((n) => [n.accountId, n.contact]),
      [
        ['alice', '[erased]'],
        ['bob', '+bob@example.org'],
      ],
    )
    t.match(breachReportCsv(after), /,alice,\[erased\],h1,owner,/)

    const notices = (await store.readStream('audit-reports')).filter(
      (e) => e.type === 'AccountHolderNotificationRequired',
    )
    t.same(
      notices.map((e) => (e.data as { contact: string }).contact),
      ['resolved', 'resolved', 'resolved', 'resolved', 'erased', 'resolved'],
      'the events record whether an address was known, not the address',
    )
    const generated = (await store.readStream('audit-reports')).find((e) => e.type === 'BreachReportGenerated')!
    t.match(generated.data, {
      urlsUsedAfterRevocation: 1,
      urlsRefusedAfterRevocation: 0,
      refusedAttemptsAfterRevocation: 0,
      revocation: { type: 'DeviceRevoked', position: revoked.position },
      households: [
        {
          householdId: 'h1',
          accountIds: ['alice', 'bob'],
          recordingIds: ['r1', 'r2'],
          urls: [
            { urlId: 'u1', usedAfterRevocation: [] },
            { urlId: 'u2', usedAfterRevocation: [downloads[1]] },
          ],
          flags: ['url-used-after-revocation'],
        },
      ],
    })
    const everything = JSON.stringify(await store.readAll())
    for (const address of ['alice.parent@example.org', 'bob@example.org']) {
      t.notOk(everything.toLowerCase().includes(address), `no event holds ${address}`)
      const files = fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
      t.notOk(
        files.some((e) =>
          fs.readFileSync(path.join(e.parentPath, e.name)).toString('latin1').toLowerCase().includes(address),
        ),
        `nor any file in the data dir (${files.length} files)`,
      )
    }
  },
)

t.test(
  'a URL used after a logout, or after its certificate alone was revoked, is flagged for that credential',
  async (t) => {
    const { store, readModels, breachReport } = await world(t)
    await put(
      store,
      'recording-r1',
      'RecordingCreated',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1' },
      { actor: 'account:alice' },
    )
    const session = { actor: 'account:alice', credential: 'token:s1' }
    await put(
      store,
      'recording-r1',
      'DownloadUrlIssued',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u-session' },
      session,
    )
    await put(
      store,
      'account-alice',
      'SessionEnded',
      { accountId: 'alice', sessionId: 's1', reason: 'logout' },
      session,
    )
    await put(
      store,
      'recording-r1',
      'RecordingDownloaded',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u-session' },
      { actor: 'anonymous' },
    )
    await put(store, 'device-d1', 'CertificateIssued', { deviceId: 'd1', serial: 'ab01' }, { actor: 'cli:ops' })
    const cert = { actor: 'device:d1', credential: 'cert:ab01' }
    await put(
      store,
      'recording-r1',
      'DownloadUrlIssued',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u-cert' },
      cert,
    )
    await put(
      store,
      'recording-r1',
      'RecordingDownloaded',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u-cert' },
      { actor: 'anonymous' },
    )
    await put(
      store,
      'device-d1',
      'CertificateRevoked',
      { deviceId: 'd1', serial: 'ab01', reason: 'leaked' },
      { actor: 'cli:ops' },
    )
    await put(
      store,
      'recording-r1',
      'RecordingDownloaded',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u-cert' },
      { actor: 'anonymous' },
    )
    await audited(t, store, readModels)

    const token = await breachReport({ credential: 'token:s1', ...wholeTime })
    t.match(token.revocation, { type: 'SessionEnded' })
    t.same(
      token.urls.map((u) => u.used.map((x) => x.afterRevocation)),
      [[true]],
      'the download after the logout',
    )
    const certificate = await breachReport({ credential: 'cert:ab01', ...wholeTime })
    t.match(certificate.revocation, { type: 'CertificateRevoked' })
    t.same(
      certificate.urls.map((u) => u.used.map((x) => x.afterRevocation)),
      [[false, true]],
      'the download before the revocation is not flagged, the one after is',
    )
    t.same(
      certificate.households.map((h) => h.flags),
      [['url-used-after-revocation']],
    )
    const device = await breachReport({ credential: 'device:d1', ...wholeTime })
    t.equal(device.revocation, null, 'revoking one certificate does not revoke the toy')
    t.same(
      device.households.map((h) => h.flags),
      [[]],
    )
  },
)

t.test(
  'attempts the embedded store refused are listed beside the uses; those after the revocation flag url-refused-after-revocation, not url-used-after-revocation',
  async (t) => {
    const { store, readModels, breachReport } = await world(t)
    const thief = { actor: 'device:d1', credential: 'cert:ab01' }
    const from = (sourceIp: string) => ({ actor: 'anonymous', sourceIp })
    const refused = (recordingId: string, method: string, urlId: string, reason: string, attempts: number) => ({
      recordingId,
      householdId: 'h1',
      deviceId: 'd1',
      method,
      urlId,
      until: later,
      code: reason === 'content-mismatch' ? 'KENNEL_ERR_RECORDING_HASH_MISMATCH' : 'KENNEL_ERR_URL_REVOKED',
      reason,
      attempts,
    })
    await put(
      store,
      'household-h1',
      'HouseholdCreated',
      { householdId: 'h1', ownerAccountId: 'alice' },
      { actor: 'account:alice' },
    )
    await put(store, 'device-d1', 'CertificateIssued', { deviceId: 'd1', serial: 'ab01' }, { actor: 'cli:ops' })
    await put(
      store,
      'recording-r1',
      'RecordingCreated',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1' },
      { actor: 'account:alice' },
    )
    await put(
      store,
      'recording-r1',
      'DownloadUrlIssued',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u-get' },
      thief,
    )
    await put(
      store,
      'recording-r1',
      'RecordingUrlRefused',
      refused('r1', 'GET', 'u-get', 'content-mismatch', 1),
      from('192.0.2.7'),
    )
    await put(
      store,
      'recording-r2',
      'RecordingCreated',
      { recordingId: 'r2', householdId: 'h1', deviceId: 'd1' },
      thief,
    )
    await put(
      store,
      'recording-r2',
      'UploadUrlIssued',
      { recordingId: 'r2', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u-put' },
      thief,
    )
    await put(
      store,
      'device-d1',
      'DeviceRevoked',
      { deviceId: 'd1', reason: 'stolen', serials: ['ab01'] },
      { actor: 'account:ops' },
    )
    // the thief still holds both URLs; the embedded store refuses them: once, then a burst folded
    await put(
      store,
      'recording-r1',
      'RecordingUrlRefused',
      refused('r1', 'GET', 'u-get', 'device-revoked', 1),
      from('203.0.113.9'),
    )
    await put(
      store,
      'recording-r1',
      'RecordingUrlRefused',
      refused('r1', 'GET', 'u-get', 'device-revoked', 4),
      from('203.0.113.9'),
    )
    await put(store, 'recording-r2', 'RecordingUrlRefused', refused('r2', 'PUT', 'u-put', 'device-revoked', 1), {})
    // another holder's URL of the same recording, refused too: not this credential's
    await put(
      store,
      'recording-r1',
      'RecordingUrlRefused',
      refused('r1', 'GET', 'u-someone-else', 'session-ended', 1),
      from('198.51.100.1'),
    )
    const runner = await audited(t, store, readModels)
    const revoked = (await store.readStream('device-d1')).find((e) => e.type === 'DeviceRevoked')!
    const refusals = [...(await store.readStream('recording-r1')), ...(await store.readStream('recording-r2'))]
      .filter((e) => e.type === 'RecordingUrlRefused')
      .map((e) => e.position)

    const report = await breachReport({ credential: 'cert:ab01', ...wholeTime })
    t.match(report.revocation, { type: 'DeviceRevoked', position: revoked.position })
    t.same(
      report.urls.map((u) => [
        u.kind,
        u.urlId,
        u.used.length,
        u.refused.map((x) => [x.position, x.reason, x.attempts, x.sourceIp ?? null, x.match, x.afterRevocation]),
      ]),
      [
        [
          'download',
          'u-get',
          0,
          [
            [refusals[0], 'content-mismatch', 1, '192.0.2.7', 'url-id', false],
            [refusals[1], 'device-revoked', 1, '203.0.113.9', 'url-id', true],
            [refusals[2], 'device-revoked', 4, '203.0.113.9', 'url-id', true],
          ],
        ],
        ['upload', 'u-put', 0, [[refusals[4], 'device-revoked', 1, null, 'url-id', true]]],
      ],
      "each refused attempt with its reason, weight and source; the one before the revocation unmarked; another URL's refusal not credited",
    )
    t.match(report.urls[0]!.refused[1], { code: 'KENNEL_ERR_URL_REVOKED', type: 'RecordingUrlRefused' })
    t.same(
      report.households.map((h) => [h.householdId, h.flags]),
      [['h1', ['url-refused-after-revocation']]],
      'refused, not used: nothing was served',
    )

    const [header, row] = breachReportCsv(report).split('\r\n')
    const cells = Object.fromEntries(header!.split(',').map((name, i) => [name, row!.split(',')[i]]))
    t.match(cells, {
      urls_issued: '2',
      urls_used: '0',
      urls_used_after_revocation: '0',
      urls_refused_after_revocation: '2',
      flags: 'url-refused-after-revocation',
    })
    const generated = (await store.readStream('audit-reports')).find((e) => e.type === 'BreachReportGenerated')!
    t.match(
      generated.data,
      {
        urlsUsed: 0,
        urlsUsedAfterRevocation: 0,
        urlsRefusedAfterRevocation: 2,
        refusedAttemptsAfterRevocation: 6,
        households: [
          {
            urls: [
              { urlId: 'u-get', refusedAt: refusals.slice(0, 3), refusedAfterRevocation: refusals.slice(1, 3) },
              { urlId: 'u-put', refusedAt: [refusals[4]], refusedAfterRevocation: [refusals[4]] },
            ],
            flags: ['url-refused-after-revocation'],
          },
        ],
      },
      'the event counts the URLs and the attempts, the burst weighed by its count',
    )

    // the same URL also served after the revocation (S3 cannot refuse; older events): both flags
    await put(
      store,
      'recording-r1',
      'RecordingDownloaded',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u-get' },
      from('203.0.113.9'),
    )
    await runner.waitFor(await store.headPosition(), 60_000)
    const both = await breachReport({ credential: 'cert:ab01', ...wholeTime })
    t.same(
      both.households.map((h) => h.flags),
      [['url-used-after-revocation', 'url-refused-after-revocation']],
    )
  },
)

t.test(
  'a burst of refusals folded at the end of its minute is listed even when recorded after the URL expired',
  async (t) => {
    const { store, readModels, breachReport } = await world(t)
    const session = { actor: 'account:alice', credential: 'token:s1' }
    const until = new Date(Date.now() + 5).toISOString()
    await put(
      store,
      'recording-r1',
      'RecordingCreated',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1' },
      { actor: 'account:alice' },
    )
    await put(
      store,
      'recording-r1',
      'DownloadUrlIssued',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until, urlId: 'u1' },
      session,
    )
    await put(
      store,
      'account-alice',
      'SessionEnded',
      { accountId: 'alice', sessionId: 's1', reason: 'logout' },
      session,
    )
    while (Date.now() <= Date.parse(until) + 1) await new Promise((r) => setTimeout(r, 5))
    await put(
      store,
      'recording-r1',
      'RecordingUrlRefused',
      {
        recordingId: 'r1',
        householdId: 'h1',
        deviceId: 'd1',
        method: 'GET',
        urlId: 'u1',
        until,
        code: 'KENNEL_ERR_URL_REVOKED',
        reason: 'session-ended',
        attempts: 7,
      },
      { actor: 'anonymous' },
    )
    await audited(t, store, readModels)
    const report = await breachReport({ credential: 'token:s1', ...wholeTime })
    t.ok(
      report.urls[0]!.refused.every((x) => x.time > until),
      'recorded after the expiry',
    )
    t.same(
      report.urls.map((u) => u.refused.map((x) => [x.attempts, x.afterRevocation])),
      [[[7, true]]],
    )
  },
)

t.test(
  "an upload URL is matched to its own RecordingUploaded where the API writes one, not to the recording's completion",
  async (t) => {
    const { store, readModels, breachReport } = await world(t)
    await put(
      store,
      'recording-r1',
      'RecordingCreated',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1' },
      { actor: 'device:d1', credential: 'cert:ab01' },
    )
    await put(
      store,
      'recording-r1',
      'UploadUrlIssued',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'up1' },
      { actor: 'device:d1', credential: 'cert:ab01' },
    )
    await put(
      store,
      'recording-r1',
      'RecordingUploaded',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', urlId: 'up1' },
      { actor: 'anonymous' },
    )
    await put(
      store,
      'recording-r1',
      'RecordingStored',
      { recordingId: 'r1', householdId: 'h1', deviceId: 'd1' },
      { actor: 'device:d1', credential: 'cert:ab01' },
    )
    await audited(t, store, readModels)
    const report = await breachReport({ credential: 'cert:ab01', ...wholeTime })
    t.same(
      report.urls.map((u) => [u.kind, u.used.map((x) => [x.type, x.match])]),
      [['upload', [['RecordingUploaded', 'url-id']]]],
    )
  },
)

t.test(
  'CSV fields: RFC 4180 quoting, and cells that a spreadsheet would run as formulas are neutralised',
  async (t) => {
    const { csvField } = await import('../../../projections/breach/csv.ts')
    t.equal(csvField('plain'), 'plain')
    t.equal(csvField('a,b'), '"a,b"')
    t.equal(csvField('say "hi"'), '"say ""hi"""')
    t.equal(csvField('two\nlines'), '"two\nlines"')
    for (const danger of ['=HYPERLINK("http://x")', '+1', '-1+2', '@SUM(A1)', '\tx', '\rx'])
      t.equal(csvField(danger)[0] === '"' ? csvField(danger)[1] : csvField(danger)[0], "'", JSON.stringify(danger))
    t.equal(csvField('=1,2'), `"'=1,2"`)
  },
)

t.test(
  'refusals stored in every shape the broker and the API wrote are the same actions in a report as the one shape',
  async (t) => {
    const thief = { actor: 'device:d1', credential: 'cert:ab01', sourceIp: '203.0.113.9' }
    const login = { actor: 'anonymous', credential: 'password:alice', sourceIp: '203.0.113.9' }
    // the stolen toy's refusals and refused logins to alice's account, as kennel wrote them over
    // time and as it writes them now (infra/net/events.ts)
    const earlier: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
      ['mqtt-d1', { limit: 'connect-device', key: 'd1', ip: '203.0.113.9', deviceId: 'd1', retryAfterMs: 1500 }, thief],
      [
        'mqtt-d1',
        {
          limit: 'publish-device',
          window: '100/second',
          deviceId: 'd1',
          serial: 'ab01',
          ip: '203.0.113.9',
          retryAfterSeconds: 1,
          refusals: 7,
        },
        thief,
      ],
      [
        'security-x',
        {
          limit: 'device-api',
          window: '60/minute',
          deviceId: 'd1',
          serial: 'ab01',
          ip: '203.0.113.9',
          retryAfterSeconds: 30,
        },
        thief,
      ],
      [
        'security-x',
        { limit: 'login-account-ip', accountId: 'alice', ip: '203.0.113.9', retryAfterSeconds: 600 },
        login,
      ],
    ]
    const now: typeof earlier = [
      [
        'mqtt-d1',
        {
          listener: 'mqtt',
          limit: 'connect-device',
          window: '10/minute',
          deviceId: 'd1',
          serial: 'ab01',
          ip: '203.0.113.9',
          retryAfterSeconds: 2,
          refusals: 1,
        },
        thief,
      ],
      [
        'mqtt-d1',
        {
          listener: 'mqtt',
          limit: 'publish-device',
          window: '100/second',
          deviceId: 'd1',
          serial: 'ab01',
          ip: '203.0.113.9',
          retryAfterSeconds: 1,
          refusals: 7,
        },
        thief,
      ],
      [
        'security-x',
        {
          listener: 'api',
          limit: 'device-api',
          window: '60/minute',
          deviceId: 'd1',
          serial: 'ab01',
          ip: '203.0.113.9',
          retryAfterSeconds: 30,
          refusals: 1,
        },
        thief,
      ],
      [
        'security-x',
        {
          listener: 'api',
          limit: 'login-account-ip',
          accountId: 'alice',
          ip: '203.0.113.9',
          retryAfterSeconds: 600,
          refusals: 1,
        },
        login,
      ],
    ]
    const reportsFrom = async (refusals: typeof earlier) => {
      const { store, readModels, breachReport } = await world(t)
      await scenario(store)
      for (const [stream, data, metadata] of refusals) await put(store, stream, 'RateLimitExceeded', data, metadata)
      await audited(t, store, readModels)
      const summary = async (credential: string) => {
        const r = await breachReport({ ...wholeTime, credential })
        return {
          actions: r.actions.map((a) => [a.type, a.stream, a.position]),
          householdIds: r.householdIds,
          accountIds: r.accountIds,
          deviceIds: r.deviceIds,
          recordingIds: r.recordingIds,
          notified: r.notifications.map((n) => n.accountId),
        }
      }
      return { device: await summary('cert:ab01'), account: await summary('account:alice') }
    }
    const fromEarlier = await reportsFrom(earlier)
    t.same(
      fromEarlier.device.actions.filter(([type]) => type === 'RateLimitExceeded').map(([, stream]) => stream),
      ['mqtt-d1', 'mqtt-d1', 'security-x'],
      "the toy's three refusals are actions of its certificate",
    )
    t.same(fromEarlier.device.deviceIds, ['d1', 'd2'])
    t.same(
      fromEarlier.account.actions.filter(([type]) => type === 'RateLimitExceeded').length,
      1,
      "the refused login is an action of alice's account",
    )
    t.same(await reportsFrom(now), fromEarlier, 'the same reports from the one shape')
  },
)
