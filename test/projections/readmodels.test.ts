import path from 'node:path'
import t from 'tap'
import { createAuditProjection, AUDIT_PROJECTION } from '../../projections/audit/projection.ts'
import { MemoryDocuments } from '../../projections/projection.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import type { EntryLookups } from '../../projections/readmodels/port.ts'
import { rebuildProjections } from '../../projections/rebuild.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import { appendAll, deviceActivity, dumpReadModels, sandbox, testKeys, traffic } from './helpers.ts'

// The embedded key index: a from-zero load buffers postings and writes them once; it must answer
// exactly as the index written batch by batch, and a crash before it is written must never leave
// a read model that looks complete.

async function answers(
  readModels: EntryLookups,
  ids: readonly string[],
  window: { since: string; until: string },
): Promise<unknown> {
  const keys = [
    'device:toy-4',
    'actor:device:toy-12',
    'credential:cert:aa8',
    'device:toy-404',
    'telemetry/device:toy-4',
    'telemetry/credential:cert:aa8',
  ]
  return {
    keys: await Promise.all(keys.map((k) => readModels.lookup(AUDIT_PROJECTION, k))),
    windowed: await Promise.all(keys.map((k) => readModels.lookup(AUDIT_PROJECTION, k, window))),
    limited: await readModels.lookup(AUDIT_PROJECTION, 'telemetry/device:toy-4', { limit: 5 }),
    ids: await Promise.all(ids.map((id) => readModels.positionOf(AUDIT_PROJECTION, id))),
  }
}

t.test(
  'a from-zero rebuild answers keys, time windows and event ids as the incrementally built index does',
  async (t) => {
    const { store, readModels, dir } = await sandbox(t)
    const { signer } = testKeys()
    const projections = [
      deviceActivity,
      createAuditProjection({ signer, headEveryEvents: 50, headEverySeconds: 86400 }),
    ]
    const runner = await startProjectionRunner({ store, readModels, projections, batchSize: 30 })
    await runner.caughtUp
    for (let i = 0; i < 4; i++) await appendAll(store, traffic(150, i + 1))
    await runner.waitFor(await store.headPosition())
    await runner.stop()
    const settle = await startProjectionRunner({ store, readModels, projections })
    await settle.caughtUp
    await settle.stop()

    const events = await store.readAll({ maxCount: 1e6 })
    const ids = [events[0]!.id, events[299]!.id, events.at(-1)!.id, '00000000-0000-4000-8000-000000000000']
    const window = { since: events[100]!.time, until: events[400]!.time }
    const fresh = openSqliteReadModels(path.join(dir, 'rebuilt.sqlite'))
    t.teardown(() => fresh.close())
    await rebuildProjections({ store, readModels: fresh, projections, batchSize: 64 })
    const incremental = await answers(readModels, ids, window)
    t.same(await answers(fresh, ids, window), incremental)
    const { keys, ids: found } = incremental as { keys: number[][]; ids: Array<number | undefined> }
    t.ok(keys[0]!.length > 0 && keys[3]!.length === 0, 'known keys are found, unknown ones are not')
    t.same(
      found,
      [events[0]!.position, events[299]!.position, events.at(-1)!.position, undefined],
      'event ids resolve to their positions',
    )
  },
)

t.test('a from-zero load that dies before its index is written is reported incomplete and rebuilt', async (t) => {
  const { store, readModelFile, dir } = await sandbox(t)
  const { signer } = testKeys()
  await appendAll(store, traffic(300))
  const projections = [createAuditProjection({ signer, headEveryEvents: 1000, headEverySeconds: 86400 })]
  // the first process commits a batch while catching up from zero and dies (never settles or
  // closes) with its postings buffered in memory
  const dying = openSqliteReadModels(path.join(dir, 'dying.sqlite'))
  const events = await store.readAll({ maxCount: 1000 })
  const apply = projections[0]!
  const docs = new MemoryDocuments()
  const entries = events.map((e) => ({
    position: e.position,
    eventId: e.id,
    time: e.time,
    entry: apply.apply(docs, e)!,
  }))
  await dying.commit([
    {
      name: AUDIT_PROJECTION,
      version: apply.version,
      expectedPosition: undefined,
      position: 300,
      puts: [],
      deletes: [],
      entries,
      catchingUp: true,
    },
  ])

  const survivor = openSqliteReadModels(path.join(dir, 'dying.sqlite'))
  t.teardown(() => survivor.close())
  t.equal((await survivor.load(AUDIT_PROJECTION))?.incomplete, true, 'another process sees an incomplete load')
  const runner = await startProjectionRunner({ store, readModels: survivor, projections })
  await runner.caughtUp
  await runner.stop()
  t.equal((await survivor.load(AUDIT_PROJECTION))?.incomplete, undefined, 'rebuilt and complete')
  const toy4 = events.filter((e) => (e.data as { deviceId: string }).deviceId === 'toy-4')
  t.same(
    await survivor.lookup(AUDIT_PROJECTION, 'device:toy-4'),
    toy4.filter((e) => e.type !== 'PublishAccepted').map((e) => e.position),
  )
  t.same(
    await survivor.lookup(AUDIT_PROJECTION, 'telemetry/device:toy-4'),
    toy4.filter((e) => e.type === 'PublishAccepted').map((e) => e.position),
    'publishes under telemetry/ keys',
  )

  const reference = openSqliteReadModels(readModelFile)
  t.teardown(() => reference.close())
  await rebuildProjections({ store, readModels: reference, projections })
  t.same(
    await dumpReadModels(survivor, [AUDIT_PROJECTION]),
    await dumpReadModels(reference, [AUDIT_PROJECTION]),
    'equals a rebuild',
  )
})

t.test(
  'opening a read-model file of an earlier layout drops the read models but keeps the alert-delivery cursor',
  async (t) => {
    const { dir } = await sandbox(t)
    const file = path.join(dir, 'old.sqlite')
    const Database = (await import('better-sqlite3')).default
    const old = new Database(file)
    old.exec(`CREATE TABLE projection_checkpoints (name TEXT PRIMARY KEY, version INTEGER NOT NULL, position INTEGER NOT NULL) STRICT;
    CREATE TABLE projection_keys (projection TEXT NOT NULL, key TEXT NOT NULL, time TEXT NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (projection, key, time, position)) STRICT, WITHOUT ROWID;
    CREATE TABLE projection_cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) STRICT;
    INSERT INTO projection_checkpoints VALUES ('audit', 1, 42);
    INSERT INTO projection_cursors VALUES ('alert-delivery', 17);`)
    old.close()
    const upgraded = openSqliteReadModels(file)
    t.teardown(() => upgraded.close())
    t.equal(await upgraded.load(AUDIT_PROJECTION), undefined, 'the old checkpoint is gone: the runner rebuilds')
    t.equal(await upgraded.cursor('alert-delivery'), 17, 'no alert is delivered twice')
  },
)
