import path from 'node:path'
import t from 'tap'
import { LeafPrefetcher, MIN_CATCH_UP } from '../../../projections/audit/leaves.ts'
import { eventLeaf } from '../../../projections/audit/merkle.ts'
import { AUDIT_PROJECTION, createAuditProjection } from '../../../projections/audit/projection.ts'
import { verifyAuditLog } from '../../../projections/audit/verify.ts'
import { createMonitorProjection, MONITOR_PROJECTION } from '../../../projections/monitor/projection.ts'
import { openSqliteReadModels } from '../../../projections/readmodels/sqlite.ts'
import { rebuildProjections } from '../../../projections/rebuild.ts'
import { startProjectionRunner } from '../../../projections/runner.ts'
import { dumpReadModels, sandbox, testKeys, traffic } from '../helpers.ts'

// A long catch-up on the embedded store takes its Merkle leaves from the leaf thread; the read
// models must be exactly those built event by event with every leaf hashed on the main thread.

t.test('leaves computed on the leaf thread equal those computed by the projection', async (t) => {
  const sb = await sandbox(t)
  const { signer, verifier } = testKeys()
  const projections = [createAuditProjection({ signer, headEveryEvents: 500, headEverySeconds: 3600 }), createMonitorProjection()]
  const names = [AUDIT_PROJECTION, MONITOR_PROJECTION]

  // incrementally, live: every leaf hashed by the projection itself
  const runner = await startProjectionRunner({ store: sb.store, readModels: sb.readModels, projections, batchSize: 1000 })
  await runner.caughtUp
  const items = traffic(MIN_CATCH_UP + 3000, 7)
  for (let i = 0; i < items.length; i += 1000) {
    const slice = items.slice(i, i + 1000)
    await Promise.all(slice.map((x) => sb.store.append(x.stream, [x.event])))
  }
  // the runner appends tree heads after its commits: wait until it has applied its own heads too
  for (let head = await sb.store.headPosition(); ; ) {
    await runner.waitFor(head, 60_000)
    await new Promise((r) => setTimeout(r, 100))
    const now = await sb.store.headPosition()
    if (now === head) break
    head = now
  }
  await runner.stop()
  t.equal(LeafPrefetcher.threadsStarted, 0, 'live events are hashed on the main thread')

  // a rebuild from zero into another file: a catch-up long enough for the thread
  const other = openSqliteReadModels(path.join(sb.dir, 'rebuilt.readmodels.sqlite'))
  t.teardown(() => other.close())
  await rebuildProjections({ store: sb.store, readModels: other, projections, batchSize: 1500 })
  t.equal(LeafPrefetcher.threadsStarted, 1, 'the rebuild used the leaf thread')
  t.ok(LeafPrefetcher.leavesProvided > MIN_CATCH_UP, 'and took most leaves from it')

  t.same(await dumpReadModels(other, names), await dumpReadModels(sb.readModels, names))
  const events = await sb.store.readAll({})
  const entries = await other.entries(AUDIT_PROJECTION, 0, 1e9)
  t.equal(entries.length, events.length)
  t.ok(entries.every((e, i) => e.digest.equals(eventLeaf(events[i]!))), 'every stored leaf is the leaf of its event')
  const verified = await verifyAuditLog({ store: sb.store, readModels: other, verifiers: [verifier] })
  t.ok(verified.ok, 'the heads signed before the rebuild verify against the rebuilt log')
  t.ok(verified.headsChecked > 0, 'heads were checked')
})
