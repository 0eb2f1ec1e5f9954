import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { openEventStore } from '../../../infra/eventstore/open.ts'
import { openStoredEventReader } from '../../../infra/eventstore/sqlite.ts'

// The embedded store's reader of events as stored (the audit log's catch-up threads read through
// it): the rows of a range of positions with their data and metadata as stored text, and whether
// the store is marked json=canonical.

t.test('a range of positions as stored, with the json=canonical mark', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-reader-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'events.sqlite')
  const store = await openEventStore(`sqlite:${file}`, { environment: 'test' })
  for (let i = 1; i <= 5; i++)
    await store.append(`s-${i % 2}`, [{ type: 'Happened', data: { z: i, a: 'é' }, metadata: { actor: 'test:reader' } }])
  const recorded = await store.readAll()
  await store.close()

  const reader = openStoredEventReader(file)
  t.teardown(() => reader.close())
  t.equal(reader.canonical, true, 'a store this kennel created is marked canonical')
  const rows = reader.range(1, 4)
  t.same(
    rows.map((r) => r[0]),
    [2, 3, 4],
    'positions after `after`, up to and including `upTo`',
  )
  t.same(
    rows.map(([position, id, stream, revision, type, time]) => ({ position, id, stream, revision, type, time })),
    recorded
      .slice(1, 4)
      .map(({ position, id, stream, revision, type, time }) => ({ position, id, stream, revision, type, time })),
  )
  t.same(
    rows.map((r) => [r[6], r[7]]),
    recorded.slice(1, 4).map((e) => [`{"a":"é","z":${(e.data as { z: number }).z}}`, '{"actor":"test:reader"}']),
    'data and metadata as the stored text, keys sorted',
  )
  t.same(reader.range(5, 100), [])

  const db = new Database(file)
  db.prepare("DELETE FROM kennel_meta WHERE key = 'json'").run()
  db.close()
  const unmarked = openStoredEventReader(file)
  t.teardown(() => unmarked.close())
  t.equal(unmarked.canonical, false, 'a store without the mark (an earlier kennel) is not')
})
