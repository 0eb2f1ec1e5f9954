import path from 'node:path'
import Database from 'better-sqlite3'
import t, { type Test } from 'tap'
import type { EventStore, NewEvent } from '../../../infra/eventstore/port.ts'
import { CompactRange, eventLeaf } from '../../../projections/audit/merkle.ts'
import { AuditCatchUpThreads, MIN_CATCH_UP } from '../../../projections/audit/catch-up-threads.ts'
import { AUDIT_PROJECTION, createAuditProjection } from '../../../projections/audit/projection.ts'
import { verifyAuditLog } from '../../../projections/audit/verify.ts'
import { createMonitorProjection, MONITOR_PROJECTION } from '../../../projections/monitor/projection.ts'
import type { Projection } from '../../../projections/projection.ts'
import type { EntryLookups, ReadModelStore } from '../../../projections/readmodels/port.ts'
import { openSqliteReadModels } from '../../../projections/readmodels/sqlite.ts'
import { rebuildProjections } from '../../../projections/rebuild.ts'
import { startProjectionRunner } from '../../../projections/runner.ts'
import { appendAll, dumpReadModels, sandbox, testKeys, type Sandbox } from '../helpers.ts'

// A long catch-up on the embedded store is applied by the catch-up threads (leaves, node hashes,
// lookup keys) while the main thread reads only the other projections' event types: the read
// models must be exactly those built event by event, on every path (canonical and earlier
// stores, gaps in positions, a thread that dies half-way).

const N = MIN_CATCH_UP + 3000

/** traffic whose data has unsorted and nested keys, escapes and non-ASCII text, some of it
 * what the monitor counts, so that canonical storage and the filtered reads are exercised */
function traffic(n: number): Array<{ stream: string; event: NewEvent }> {
  return Array.from({ length: n }, (_, i) => {
    const deviceId = `toy-${i % 37}`
    const meta = { credential: `cert:${(i % 37).toString(16)}`, actor: `device:${deviceId}` }
    if (i % 11 === 0)
      return {
        stream: `security-${i % 3}`,
        event: {
          type: 'DeviceAuthFailed',
          data: { reason: 'untrusted-certificate', ip: `198.51.100.${i % 7}` },
          metadata: { actor: 'anonymous' },
        },
      }
    if (i % 13 === 0)
      return {
        stream: `api-${i % 5}`,
        event: {
          type: 'DownloadUrlIssued',
          data: { until: '2030-01-01T00:00:00.000Z', recordingId: `rec-${i}`, householdId: `hh-${i % 4}`, deviceId },
          metadata: meta,
        },
      }
    return {
      stream: `mqtt-${deviceId}`,
      event: {
        type: 'PublishAccepted',
        data: {
          zeta: i,
          topic: `toys/${deviceId}/telemetry`,
          nested: { b: [1, { y: 2, x: 'ü"\\' }], a: null },
          deviceId,
          bytes: i % 100,
        },
        metadata: meta,
      },
    }
  })
}

function projections(signer: ReturnType<typeof testKeys>['signer']): Projection[] {
  return [
    createAuditProjection({ signer, headEveryEvents: 500, headEverySeconds: 3600 }),
    createMonitorProjection({ 'download-volume-per-device': { count: 5, windowSeconds: 3600 } }),
  ]
}
const NAMES = [AUDIT_PROJECTION, MONITOR_PROJECTION]

/** append the traffic with the runner following live (every leaf hashed on the main thread) and
 * wait until it has applied its own tree heads too */
async function buildLive(sb: Sandbox, ps: Projection[]): Promise<void> {
  const runner = await startProjectionRunner({
    store: sb.store,
    readModels: sb.readModels,
    projections: ps,
    batchSize: 1000,
  })
  await runner.caughtUp
  await appendAll(sb.store, traffic(N))
  for (let head = await sb.store.headPosition(); ; ) {
    await runner.waitFor(head, 60_000)
    await new Promise((r) => setTimeout(r, 100))
    const now = await sb.store.headPosition()
    if (now === head) break
    head = now
  }
  await runner.stop()
}

async function lookups(readModels: EntryLookups, store: EventStore): Promise<unknown> {
  const events = await store.readAll({})
  const window = { since: events[5000]!.time, until: events[15000]!.time }
  const keys = [
    'device:toy-4',
    'actor:device:toy-12',
    'credential:cert:a',
    'household:hh-2',
    'recording:rec-1001',
    'actor:anonymous',
    'device:toy-404',
    'telemetry/device:toy-4',
    'telemetry/actor:device:toy-12',
  ]
  return {
    keys: await Promise.all(keys.map((k) => readModels.lookup(AUDIT_PROJECTION, k))),
    windowed: await Promise.all(keys.map((k) => readModels.lookup(AUDIT_PROJECTION, k, window))),
    ids: await Promise.all(
      [events[0]!, events[7777]!, events.at(-1)!].map((e) => readModels.positionOf(AUDIT_PROJECTION, e.id)),
    ),
  }
}

/** the audit read model holds each event's own leaf, in order, and the tree over all of them */
async function auditMatchesEvents(
  t: Test,
  readModels: ReadModelStore & EntryLookups,
  store: EventStore,
): Promise<void> {
  const events = await store.readAll({})
  const entries = await readModels.entries(AUDIT_PROJECTION, 0, 1e9)
  t.same(
    entries.map((e) => [e.position, e.ordinal]),
    events.map((e, i) => [e.position, i]),
    'an entry per event, ordinals in order',
  )
  t.ok(
    entries.every((e, i) => e.digest.equals(eventLeaf(events[i]!))),
    'every stored leaf is the leaf of its event',
  )
  const range = new CompactRange()
  for (const e of events) range.push(eventLeaf(e))
  const tree = (await readModels.load(AUDIT_PROJECTION))!.docs.find(([c]) => c === 'audit-tree')![2] as {
    size: number
    stack: string[]
  }
  t.same(
    { size: tree.size, stack: tree.stack },
    { size: range.size, stack: range.stack.map((b) => b.toString('hex')) },
    'the stored tree is the tree of every leaf',
  )
}

t.test('a rebuild on the catch-up threads gives the read models built event by event', async (t) => {
  const sb = await sandbox(t)
  const { signer, verifier } = testKeys()
  const ps = projections(signer)
  const started = AuditCatchUpThreads.threadsStarted
  await buildLive(sb, ps)
  t.equal(AuditCatchUpThreads.threadsStarted, started, 'live events are applied on the main thread')

  const other = openSqliteReadModels(path.join(sb.dir, 'rebuilt.readmodels.sqlite'))
  t.teardown(() => other.close())
  const chunks = AuditCatchUpThreads.chunksProvided
  await rebuildProjections({ store: sb.store, readModels: other, projections: ps, batchSize: 1500 })
  t.ok(AuditCatchUpThreads.threadsStarted > started, 'the rebuild used catch-up threads')
  t.ok(AuditCatchUpThreads.chunksProvided - chunks >= Math.floor(N / 2048), 'which provided the chunks')

  t.same(await dumpReadModels(other, NAMES), await dumpReadModels(sb.readModels, NAMES), 'documents and entries equal')
  t.same(
    await lookups(other, sb.store),
    await lookups(sb.readModels, sb.store),
    'keys, windows and event ids answer the same',
  )
  await auditMatchesEvents(t, other, sb.store)
  const verified = await verifyAuditLog({ store: sb.store, readModels: other, verifiers: [verifier] })
  t.ok(verified.ok && verified.headsChecked > 0, 'the heads signed before the rebuild verify against the rebuilt log')
})

t.test('a store of an earlier kennel, whose JSON is not canonical, is hashed from its parsed events', async (t) => {
  const sb = await sandbox(t)
  const { signer, verifier } = testKeys()
  const ps = projections(signer)
  await buildLive(sb, ps)
  const file = sb.url.slice('sqlite:'.length)
  const reorder = (json: string): string =>
    JSON.stringify(Object.fromEntries(Object.entries(JSON.parse(json) as object).reverse()))
  const db = new Database(file)
  t.teardown(() => db.close())
  db.exec('DROP TRIGGER events_are_immutable')
  const rows = db.prepare("SELECT position, data, metadata FROM events WHERE stream LIKE 'mqtt-%'").all() as Array<{
    position: number
    data: string
    metadata: string
  }>
  const update = db.prepare('UPDATE events SET data = ?, metadata = ? WHERE position = ?')
  db.transaction(() => rows.forEach((r) => update.run(reorder(r.data), reorder(r.metadata), r.position)))()
  t.not(rows[0]!.data, reorder(rows[0]!.data), 'the stored text is rewritten with its keys unsorted')

  // still marked canonical: the threads hash the text as stored, which no longer gives the leaves
  const claimed = openSqliteReadModels(path.join(sb.dir, 'claimed.readmodels.sqlite'))
  t.teardown(() => claimed.close())
  await rebuildProjections({ store: sb.store, readModels: claimed, projections: ps })
  const events = await sb.store.readAll({ filter: { streamPrefixes: ['mqtt-'] }, maxCount: 1 })
  t.notOk(
    (await claimed.entryAt(AUDIT_PROJECTION, events[0]!.position))!.digest.equals(eventLeaf(events[0]!)),
    'json=canonical is what lets the threads hash unparsed text',
  )

  db.prepare("DELETE FROM kennel_meta WHERE key = 'json'").run()
  const rebuilt = openSqliteReadModels(path.join(sb.dir, 'rebuilt.readmodels.sqlite'))
  t.teardown(() => rebuilt.close())
  await rebuildProjections({ store: sb.store, readModels: rebuilt, projections: ps })
  t.same(
    await dumpReadModels(rebuilt, NAMES),
    await dumpReadModels(sb.readModels, NAMES),
    'without the mark, the same read models as event by event',
  )
  t.ok(
    (await verifyAuditLog({ store: sb.store, readModels: rebuilt, verifiers: [verifier] })).ok,
    'and the log verifies',
  )
})

t.test('positions with a gap: the chunks around it are applied without their node hashes', async (t) => {
  const sb = await sandbox(t)
  await appendAll(sb.store, traffic(N))
  const db = new Database(sb.url.slice('sqlite:'.length))
  db.exec('DROP TRIGGER events_are_append_only')
  db.prepare('DELETE FROM events WHERE position IN (3000, 9001)').run()
  db.close()
  const { signer } = testKeys()
  await rebuildProjections({
    store: sb.store,
    readModels: sb.readModels,
    projections: [createAuditProjection({ signer, headEveryEvents: 1e9, headEverySeconds: 86400 })],
  })
  await auditMatchesEvents(t, sb.readModels, sb.store)
})

t.test(
  'a catch-up thread that dies half-way: the rest is applied on the main thread, with the same result',
  async (t) => {
    const sb = await sandbox(t)
    const { signer } = testKeys()
    const ps = projections(signer)
    await buildLive(sb, ps)
    let killed = false
    AuditCatchUpThreads.onStart = (threads) =>
      threads[0]!.once('message', () => void threads[0]!.terminate().then(() => (killed = true)))
    t.teardown(() => (AuditCatchUpThreads.onStart = undefined))
    const other = openSqliteReadModels(path.join(sb.dir, 'rebuilt.readmodels.sqlite'))
    t.teardown(() => other.close())
    await rebuildProjections({ store: sb.store, readModels: other, projections: ps, batchSize: 1500 })
    t.ok(killed, 'a thread was terminated during the rebuild')
    t.same(await dumpReadModels(other, NAMES), await dumpReadModels(sb.readModels, NAMES))
    t.same(await lookups(other, sb.store), await lookups(sb.readModels, sb.store))
    await auditMatchesEvents(t, other, sb.store)
  },
)
