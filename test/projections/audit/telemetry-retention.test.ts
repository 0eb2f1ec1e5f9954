import t, { type Test } from 'tap'
import { loadConfig } from '../../../infra/config.ts'
import type { EventStore } from '../../../infra/eventstore/port.ts'
import { AuditLog } from '../../../projections/audit/log.ts'
import { createAuditProjection } from '../../../projections/audit/projection.ts'
import { forgetTelemetry, startTelemetryRetention } from '../../../projections/audit/telemetry-retention.ts'
import { verifyAuditLog } from '../../../projections/audit/verify.ts'
import type { EntryLookups, ReadModelStore } from '../../../projections/readmodels/port.ts'
import { startProjectionRunner } from '../../../projections/runner.ts'
import { sandbox, testKeys } from '../helpers.ts'

// KENNEL_RETENTION_TELEMETRY_DAYS (R12): the audit log's index of per-message metadata
// (PublishAccepted, InboxMessagePublished) is dropped after the retention; the security record
// (connections, denials) stays indexed, and the log still verifies. That each store's forget
// drops exactly that is the read-model contract's (test/projections/readmodels/contract.ts).

const DAY_MS = 86_400_000
const toy = { actor: 'device:toy-1', credential: 'cert:aa01' }

async function scenario(t: Test, store: EventStore, readModels: ReadModelStore & EntryLookups) {
  const { signer, verifier } = testKeys()
  const projections = [createAuditProjection({ signer, headEveryEvents: 4, headEverySeconds: 3600 })]
  const project = async () => {
    const runner = await startProjectionRunner({ store, readModels, projections })
    await runner.waitFor(await store.headPosition())
    await runner.stop()
  }
  const old = [
    await store.append('mqtt-toy-1', [
      { type: 'DeviceConnected', data: { deviceId: 'toy-1', ip: '203.0.113.9' }, metadata: toy },
    ]),
    await store.append('mqtt-toy-1', [
      {
        type: 'PublishAccepted',
        data: { deviceId: 'toy-1', topic: 'toys/toy-1/telemetry', qos: 1, retain: false, bytes: 3, sha256: 'ab' },
        metadata: toy,
      },
    ]),
    await store.append('mqtt-toy-1', [
      {
        type: 'InboxMessagePublished',
        data: { deviceId: 'toy-1', topic: 'toys/toy-1/inbox/hello', qos: 1, bytes: 3, sha256: 'cd' },
        metadata: { actor: 'system:api' },
      },
    ]),
    await store.append('mqtt-toy-1', [
      {
        type: 'PublishDenied',
        data: { deviceId: 'toy-1', topic: 'toys/toy-2/x', qos: 1, bytes: 3, reason: 'acl', will: false },
        metadata: toy,
      },
    ]),
  ].map((r) => r.position)
  const lastOld = Date.parse((await store.readAll()).at(-1)!.time)
  while (Date.now() <= lastOld) await new Promise((r) => setImmediate(r))
  const recent = (
    await store.append('mqtt-toy-1', [
      {
        type: 'PublishAccepted',
        data: { deviceId: 'toy-1', topic: 'toys/toy-1/telemetry', qos: 1, retain: false, bytes: 4, sha256: 'ef' },
        metadata: toy,
      },
    ])
  ).position
  const firstRecent = Date.parse((await store.readAll()).find((e) => e.position === recent)!.time)
  await project()
  const log = new AuditLog(store, readModels)
  const indexed = () => log.positions(['device:toy-1', 'credential:cert:aa01', 'actor:device:toy-1'])
  t.same(await indexed(), [...old, recent], 'before: every event of the toy is found')

  const retentionDays = 30
  // the bound falls between the old events and the recent one
  const now = () => new Date(firstRecent + retentionDays * DAY_MS)
  const dropped = await forgetTelemetry({ readModels, retentionDays, now })
  t.ok(dropped >= 4, `${dropped} postings of the old publish and inbox message dropped`)
  t.same(
    await indexed(),
    [old[0], old[3], recent],
    'after: the old publish and inbox message are no longer found; the connection, the denial and the recent publish are',
  )
  t.equal(await forgetTelemetry({ readModels, retentionDays, now }), 0, 'a second run drops nothing')
  const later = () => new Date(firstRecent + (retentionDays + 1) * DAY_MS)
  await forgetTelemetry({ readModels, retentionDays, now: later })
  t.same(await indexed(), [old[0], old[3]], 'a day later the recent publish goes too; the security record stays')

  const verified = await verifyAuditLog({ store, readModels, verifiers: [verifier], headEveryEvents: 4 })
  t.ok(verified.ok, `the audit log still verifies: ${JSON.stringify(verified.firstBreak)}`)
  t.equal((await store.readAll()).length, await store.headPosition(), 'the events themselves stay in the store')
}

t.test('the telemetry index is forgotten after the retention, the security record stays', async (t) => {
  const sb = await sandbox(t)
  await scenario(t, sb.store, sb.readModels)
})

t.test('the job drops the telemetry index when the projector starts it, then every hour', async (t) => {
  const sb = await sandbox(t)
  const { signer } = testKeys()
  await sb.store.append('mqtt-toy-1', [
    {
      type: 'PublishAccepted',
      data: { deviceId: 'toy-1', topic: 'toys/toy-1/t', qos: 0, retain: false, bytes: 1, sha256: 'ab' },
      metadata: toy,
    },
  ])
  const runner = await startProjectionRunner({
    store: sb.store,
    readModels: sb.readModels,
    projections: [createAuditProjection({ signer, headEveryEvents: 1000, headEverySeconds: 3600 })],
  })
  await runner.waitFor(await sb.store.headPosition())
  await runner.stop()
  t.same(await new AuditLog(sb.store, sb.readModels).positions(['device:toy-1']), [1])
  const job = startTelemetryRetention({
    readModels: sb.readModels,
    retentionDays: 1,
    now: () => new Date(Date.now() + 2 * DAY_MS),
  })
  await job.stop()
  t.same(await new AuditLog(sb.store, sb.readModels).positions(['device:toy-1']), [], 'gone after the first run')
})

t.test('KENNEL_RETENTION_TELEMETRY_DAYS: 90 days by default, a whole number of days', async (t) => {
  t.equal(loadConfig({}).retentionTelemetryDays, 90)
  t.equal(loadConfig({ KENNEL_RETENTION_TELEMETRY_DAYS: '7' }).retentionTelemetryDays, 7)
  t.throws(() => loadConfig({ KENNEL_RETENTION_TELEMETRY_DAYS: '0' }), /KENNEL_RETENTION_TELEMETRY_DAYS/)
})
