import fs from 'node:fs'
import path from 'node:path'
import { randomUUID } from 'node:crypto'
import Database from 'better-sqlite3'
import t, { type Test } from 'tap'
import { openEventStore } from '../../../infra/eventstore/open.ts'
import { createAuditProjection } from '../../../projections/audit/projection.ts'
import { verifyAuditLog, type BreakKind, type VerifyResult } from '../../../projections/audit/verify.ts'
import { openSqliteReadModels } from '../../../projections/readmodels/sqlite.ts'
import { startProjectionRunner } from '../../../projections/runner.ts'
import { appendAll, sandbox, testKeys, traffic } from '../helpers.ts'

// An attacker with write access to the database file: the immutability triggers are dropped in a
// copy, one event is edited, deleted, inserted or two are swapped, and `audit verify` must name
// the first position that no longer matches.

type Mutation = (db: Database.Database, p: number, q: number) => { position: number; kinds: BreakKind[] }

const mutations: Record<string, Mutation> = {
  'edit data': (db, p) => (
    db.prepare(`UPDATE events SET data = json_set(data, '$.tampered', 1) WHERE position = ?`).run(p),
    { position: p, kinds: ['edited', 'head-signature'] }
  ),
  'edit metadata': (db, p) => (
    db
      .prepare(`UPDATE events SET metadata = json_set(metadata, '$.actor', 'device:innocent') WHERE position = ?`)
      .run(p),
    { position: p, kinds: ['edited'] }
  ),
  'edit type': (db, p) => (
    db.prepare(`UPDATE events SET type = 'Nothing' WHERE position = ?`).run(p), { position: p, kinds: ['edited'] }
  ),
  'edit time': (db, p) => (
    db.prepare(`UPDATE events SET time = '2001-01-01T00:00:00.000Z' WHERE position = ?`).run(p),
    { position: p, kinds: ['edited'] }
  ),
  'data not JSON': (db, p) => (
    db.prepare(`UPDATE events SET data = '{broken' WHERE position = ?`).run(p), { position: p, kinds: ['edited'] }
  ),
  'metadata blank': (db, p) => (
    db.prepare(`UPDATE events SET metadata = '' WHERE position = ?`).run(p), { position: p, kinds: ['edited'] }
  ),
  delete: (db, p) => (db.prepare('DELETE FROM events WHERE position = ?').run(p), { position: p, kinds: ['deleted'] }),
  insert: (db, p) => {
    db.prepare('UPDATE events SET position = -position - 1 WHERE position > ?').run(p)
    db.prepare('UPDATE events SET position = -position WHERE position < 0').run()
    db.prepare(
      `INSERT INTO events (position, id, stream, revision, type, time, data, metadata) VALUES (?, ?, 'forged', 0, 'PublishAccepted', ?, '{"deviceId":"toy-1"}', '{}')`,
    ).run(p + 1, randomUUID(), new Date().toISOString())
    return { position: p + 1, kinds: ['inserted'] }
  },
  swap: (db, p, q) => {
    const [a, b] = [p, q].sort((x, y) => x - y) as [number, number]
    const row = (pos: number) =>
      db
        .prepare('SELECT id, stream, revision, type, time, data, metadata FROM events WHERE position = ?')
        .get(pos) as Record<string, unknown>
    const ra = row(a)
    const rb = row(b)
    const set = db.prepare(
      'UPDATE events SET id = @id, stream = @stream, revision = @revision, type = @type, time = @time, data = @data, metadata = @metadata WHERE position = @position',
    )
    set.run({ ...ra, id: randomUUID(), stream: '$swap', revision: -1, position: a })
    set.run({ ...ra, position: b })
    set.run({ ...rb, position: a })
    return { position: a, kinds: ['reordered'] }
  },
}

t.test('audit verify names the first altered position for random edits, deletions, insertions and swaps', async (t) => {
  const { store, readModels, dir, url, readModelFile } = await sandbox(t)
  const { signer, verifier } = testKeys()
  const runner = await startProjectionRunner({
    store,
    readModels,
    projections: [createAuditProjection({ signer, headEveryEvents: 40, headEverySeconds: 86400 })],
    batchSize: 25,
  })
  await runner.caughtUp
  await appendAll(store, traffic(300))
  await runner.waitFor(await store.headPosition())
  await runner.stop()
  // pick up the heads appended at the end, so every event has a recorded leaf
  const settle = await startProjectionRunner({
    store,
    readModels,
    projections: [createAuditProjection({ signer, headEveryEvents: 40, headEverySeconds: 86400 })],
  })
  await settle.caughtUp
  await settle.stop()
  const head = await store.headPosition()
  await store.close()
  await readModels.close()
  const eventsFile = url.slice('sqlite:'.length)

  const untouched = await openEventStore(url, { environment: 'test' })
  const rm = openSqliteReadModels(readModelFile)
  const clean = await verifyAuditLog({ store: untouched, readModels: rm, verifiers: [verifier] })
  t.ok(clean.ok, 'an untouched store verifies')
  t.equal(clean.events, head)
  t.ok(clean.headsChecked >= 7 && clean.signedSize >= 280, `${clean.headsChecked} heads checked`)
  t.equal(clean.leavesCompared, head)
  await untouched.close()
  await rm.close()

  let seed = 42
  const rnd = (k: number): number => ((seed = (seed * 1103515245 + 12345) % 2147483648), 1 + (seed % k))
  let trial = 0
  for (const [name, mutate] of Object.entries(mutations)) {
    for (let i = 0; i < 8; i++) {
      const p = rnd(head - 1)
      const q = rnd(head - 1)
      if (name === 'swap' && p === q) continue
      const copy = path.join(dir, `trial-${trial++}.sqlite`)
      fs.copyFileSync(eventsFile, copy)
      const db = new Database(copy)
      db.exec('DROP TRIGGER events_are_immutable; DROP TRIGGER events_are_append_only')
      const expected = mutate(db, p, q)
      db.close()
      const tampered = await openEventStore(`sqlite:${copy}`, { environment: 'test' })
      const models = openSqliteReadModels(readModelFile)
      const result = await verifyAuditLog({ store: tampered, readModels: models, verifiers: [verifier] })
      const withoutLeaves = await verifyAuditLog({ store: tampered, verifiers: [verifier] })
      await tampered.close()
      await models.close()
      fs.rmSync(copy)
      t.notOk(result.ok, `${name} at ${p}: detected`)
      t.equal(
        result.firstBreak?.position,
        expected.position,
        `${name} at ${p}: first break named (${result.firstBreak?.message})`,
      )
      t.ok(expected.kinds.includes(result.firstBreak!.kind), `${name}: reported as ${result.firstBreak?.kind}`)
      if (expected.position <= clean.signedSize) {
        t.notOk(withoutLeaves.ok, `${name} at ${p}: detected by the signed heads alone`)
        t.ok(
          withoutLeaves.firstBreak!.position <= expected.position &&
            expected.position - withoutLeaves.firstBreak!.position < 40,
          `${name}: heads alone locate it within the head interval before ${expected.position} (${withoutLeaves.firstBreak?.position})`,
        )
      }
    }
  }
})

t.test('a head signed by another key is refused', async (t) => {
  const { store, readModels } = await sandbox(t)
  const mine = testKeys()
  const attacker = testKeys()
  await appendAll(store, traffic(30))
  const runner = await startProjectionRunner({
    store,
    readModels,
    projections: [createAuditProjection({ signer: attacker.signer, headEveryEvents: 10, headEverySeconds: 86400 })],
  })
  await runner.caughtUp
  await runner.stop()
  const result = await verifyAuditLog({ store, readModels, verifiers: [mine.verifier] })
  t.notOk(result.ok)
  t.equal(result.firstBreak?.kind, 'head-signature')
  t.ok(
    (await verifyAuditLog({ store, readModels, verifiers: [attacker.verifier] })).ok,
    'the signing key itself verifies',
  )
})

/** a store of 100 events with a head every 10 among them, closed; `tamper` runs SQL on a copy of it */
async function signedStore(t: Test): Promise<{
  head: number
  heads: number[]
  tamper(sql: string): Promise<{ withLeaves: VerifyResult; withoutLeaves: VerifyResult; strict: VerifyResult }>
}> {
  const { store, readModels, dir, url, readModelFile } = await sandbox(t)
  const { signer, verifier } = testKeys()
  const projection = () => createAuditProjection({ signer, headEveryEvents: 10, headEverySeconds: 86400 })
  // heads between the events, as when the server runs while toys publish
  const runner = await startProjectionRunner({ store, readModels, projections: [projection()], batchSize: 5 })
  await runner.caughtUp
  const events = traffic(100)
  for (let i = 0; i < 100; i += 10) {
    await appendAll(store, events.slice(i, i + 10))
    await runner.waitFor(await store.headPosition())
    while ((await store.readStream('audit-heads')).length < (i + 10) / 10) await new Promise((r) => setTimeout(r, 5))
  }
  await runner.stop()
  const settle = await startProjectionRunner({ store, readModels, projections: [projection()] })
  await settle.caughtUp
  await settle.stop()
  const head = await store.headPosition()
  const heads = (await store.readStream('audit-heads')).map((e) => e.position)
  await store.close()
  await readModels.close()
  let n = 0
  return {
    head,
    heads,
    async tamper(sql) {
      const copy = path.join(dir, `copy-${n++}.sqlite`)
      fs.copyFileSync(url.slice('sqlite:'.length), copy)
      const db = new Database(copy)
      db.exec('DROP TRIGGER events_are_immutable; DROP TRIGGER events_are_append_only')
      db.exec(sql)
      db.close()
      const tampered = await openEventStore(`sqlite:${copy}`, { environment: 'test' })
      const models = openSqliteReadModels(readModelFile)
      try {
        return {
          withLeaves: await verifyAuditLog({ store: tampered, readModels: models, verifiers: [verifier] }),
          withoutLeaves: await verifyAuditLog({ store: tampered, verifiers: [verifier] }),
          strict: await verifyAuditLog({ store: tampered, verifiers: [verifier], headEveryEvents: 10 }),
        }
      } finally {
        await tampered.close()
        await models.close()
      }
    },
  }
}

t.test('a store changed outside kennel in ways that break its reading is reported, not crashed on', async (t) => {
  const s = await signedStore(t)
  const clean = await s.tamper('SELECT 1')
  t.ok(
    clean.withLeaves.ok && clean.withoutLeaves.ok && clean.strict.ok,
    'the untouched copy verifies, with the signing interval too',
  )
  const h = s.heads[3]!
  for (const [name, sql] of [
    ['head data null', `UPDATE events SET data = 'null' WHERE position = ${h}`],
    ['head data a string', `UPDATE events SET data = '"x"' WHERE position = ${h}`],
    ['head data not JSON', `UPDATE events SET data = '{' WHERE position = ${h}`],
    ['head with an extra field', `UPDATE events SET data = json_set(data, '$.extra', 1) WHERE position = ${h}`],
    [
      'signature with junk after it',
      `UPDATE events SET data = json_set(data, '$.signature', json_extract(data, '$.signature') || '!!!') WHERE position = ${h}`,
    ],
    [
      'signature without its padding',
      `UPDATE events SET data = json_set(data, '$.signature', rtrim(json_extract(data, '$.signature'), '=')) WHERE position = ${h}`,
    ],
  ] as const) {
    const r = await s.tamper(sql)
    for (const [how, v] of Object.entries(r)) {
      t.notOk(v.ok, `${name} (${how}): detected`)
      t.equal(v.firstBreak?.position, h, `${name} (${how}): at the head's position (${v.firstBreak?.message})`)
    }
  }
})

t.test('the first altered position is named even when a later head is also altered', async (t) => {
  const s = await signedStore(t)
  const late = s.heads.at(-2)!
  const r = await s.tamper(
    `UPDATE events SET type = type || 'x' WHERE position = 4; UPDATE events SET data = json_set(data, '$.size', 1) WHERE position = ${late}`,
  )
  t.equal(
    r.withLeaves.firstBreak?.position,
    4,
    `with the recorded leaves: position 4 (${r.withLeaves.firstBreak?.message})`,
  )
  t.ok(
    r.withoutLeaves.firstBreak!.position <= 4,
    `by the heads alone: at or before 4 (${r.withoutLeaves.firstBreak?.message})`,
  )
})

t.test('events deleted under the last head name the position after the last matching head', async (t) => {
  const s = await signedStore(t)
  // everything after a head but the very last head, which now covers more events than are left
  const previousHead = s.heads.at(-3)!
  const r = await s.tamper(`DELETE FROM events WHERE position > ${previousHead} AND position < ${s.heads.at(-1)!}`)
  t.notOk(r.withoutLeaves.ok)
  t.equal(r.withoutLeaves.firstBreak?.kind, 'truncated')
  const at = r.withoutLeaves.firstBreak?.position ?? 0
  t.ok(
    at > previousHead - 10 && at <= previousHead + 1,
    `at the end of the last matching head's range, not 0 (${r.withoutLeaves.firstBreak?.message})`,
  )
  t.equal(r.withLeaves.firstBreak?.position, previousHead + 1, 'the recorded leaves name the first deleted event')
})

t.test(
  'deleting every head and the audit read model leaves a log that is reported unsigned under the signing interval',
  async (t) => {
    const s = await signedStore(t)
    const r = await s.tamper(
      `DELETE FROM events WHERE stream = 'audit-heads'; UPDATE events SET data = json_set(data, '$.size', 1) WHERE position = 20`,
    )
    t.ok(r.withoutLeaves.ok, 'without the interval, nothing contradicts an unsigned log (the known limit)')
    t.notOk(r.strict.ok, 'with it, the unsigned events are not passed as consistent')
    t.equal(r.strict.firstBreak?.kind, 'unsigned')
    t.equal(r.strict.firstBreak?.position, 1, String(r.strict.firstBreak?.message))
    t.equal(
      r.withLeaves.firstBreak?.position,
      s.heads[0],
      `the recorded leaves find the first deleted head (${r.withLeaves.firstBreak?.message})`,
    )
  },
)
