import { createHash } from 'node:crypto'
import type { Test } from 'tap'
import { WrongExpectedRevisionError } from '../../../infra/eventstore/port.ts'
import type {
  EntryColumns,
  EntryLookups,
  EntryRow,
  ProjectionChanges,
  ReadModelStore,
  StoredEntry,
} from '../../../projections/readmodels/port.ts'

// The read-model store contract, written once and run against both stores (SQLite, PostgreSQL):
// what the runner relies on (documents and checkpoints written in one transaction, refused when
// another writer moved the checkpoint, nothing of a refused commit kept) and what the audit log
// reads back (EntryLookups).

type Store = ReadModelStore & EntryLookups

export interface ReadModelTarget {
  /** a fresh, empty store; each `open` is another connection to it, closed when the test ends */
  fresh(t: Test): Promise<{ open(): Promise<Store> }>
}

const T0 = Date.UTC(2026, 0, 1)
const at = (seconds: number): string => new Date(T0 + seconds * 1000).toISOString()
const digestOf = (position: number, length = 32): Buffer =>
  createHash('sha512').update(`leaf ${position}`).digest().subarray(0, length)

interface Ev {
  position: number
  id: string
  time: string
  keys: string[]
}

/** ids whose first four characters are hex, as kennel's are, and two that are not */
const idOf = (position: number): string =>
  `${(0xa000 + position).toString(16)}0000-0000-4000-8000-${position.toString().padStart(12, '0')}`

function rowsOf(events: readonly Ev[], firstOrdinal = 0): EntryRow[] {
  return events.map((e, i) => ({
    position: e.position,
    eventId: e.id,
    time: e.time,
    entry: { ordinal: firstOrdinal + i, keys: e.keys, digest: digestOf(e.position) },
  }))
}

/** the same entries in columns, cut in two at `cut` (a catch-up gives slices of one table) */
function columnsOf(events: readonly Ev[], firstOrdinal: number, cut: number): EntryColumns[] {
  const keyNames: string[] = []
  const keys: number[] = []
  const keyStarts = new Int32Array(events.length + 1)
  events.forEach((e, i) => {
    for (const k of e.keys) {
      let id = keyNames.indexOf(k)
      if (id < 0) id = keyNames.push(k) - 1
      keys.push(id)
    }
    keyStarts[i + 1] = keys.length
  })
  const table = {
    positions: Float64Array.from(events.map((e) => e.position)),
    eventIds: events.map((e) => e.id),
    times: events.map((e) => e.time),
    digests: Buffer.concat(events.map((e) => digestOf(e.position))),
    keyNames,
    keys: Int32Array.from(keys),
    keyStarts,
  }
  return [
    { ...table, start: 0, length: cut, firstOrdinal },
    { ...table, start: cut, length: events.length - cut, firstOrdinal: firstOrdinal + cut },
  ]
}

function changes(
  name: string,
  expectedPosition: number | undefined,
  position: number,
  more: Partial<ProjectionChanges> = {},
): ProjectionChanges {
  return { name, version: 1, expectedPosition, position, puts: [], deletes: [], entries: [], ...more }
}

const shown = (entries: Array<StoredEntry | undefined>): string[] =>
  entries.map((e) => (e === undefined ? '-' : `${e.ordinal}@${e.position} ${e.time} ${e.digest.toString('hex')}`))
const expected = (events: readonly Ev[], firstOrdinal = 0): string[] =>
  events.map((e, i) => `${firstOrdinal + i}@${e.position} ${e.time} ${digestOf(e.position).toString('hex')}`)

/** twelve events with a gap in positions (7 to 10), times mostly shared, one (10) earlier than
 * its predecessor, a key named twice by one event, and keys under the forgettable prefix */
const EVENTS: Ev[] = [
  { position: 1, id: idOf(1), time: at(0), keys: ['device:a', 'actor:device:a'] },
  { position: 2, id: idOf(2), time: at(0), keys: ['telemetry/device:a'] },
  { position: 3, id: idOf(3), time: at(10), keys: ['device:b', 'account:x', 'account:x'] },
  { position: 4, id: idOf(4), time: at(10), keys: ['telemetry/device:a', 'telemetry/device:b'] },
  { position: 5, id: idOf(5), time: at(20), keys: ['device:a'] },
  { position: 6, id: 'zz-not-hex-6', time: at(20), keys: ['telemetry/device:a'] },
  { position: 7, id: idOf(7), time: at(30), keys: ['device:a'] },
  { position: 10, id: 'ab', time: at(25), keys: ['device:a', 'device:b'] },
  { position: 11, id: idOf(11), time: at(40), keys: ['telemetry/device:a'] },
  { position: 12, id: idOf(12).toUpperCase(), time: at(40), keys: ['device:b'] },
  { position: 13, id: idOf(13), time: at(50), keys: ['telemetry/device:b', 'device:a'] },
  { position: 14, id: idOf(14), time: at(60), keys: ['device:a'] },
]

/** what every lookup of EVENTS answers, for comparing two ways of storing them */
async function answers(store: EntryLookups, name: string): Promise<unknown> {
  const keys = [
    'device:a',
    'device:b',
    'actor:device:a',
    'account:x',
    'telemetry/device:a',
    'telemetry/device:b',
    'device:none',
  ]
  return {
    keys: await Promise.all(keys.map((k) => store.lookup(name, k))),
    windowed: await Promise.all(keys.map((k) => store.lookup(name, k, { since: at(10), until: at(40) }))),
    limited: await store.lookup(name, 'device:a', { limit: 2 }),
    ids: await Promise.all(EVENTS.map((e) => store.positionOf(name, e.id))),
    entries: shown(await store.entries(name, 0, 100)),
  }
}

export function readModelContract(t: Test, target: ReadModelTarget): void {
  t.test(
    'a projection never committed loads as undefined, has no checkpoint, no entries and no keys; a cursor never set is 0',
    async (t) => {
      const store = await (await target.fresh(t)).open()
      t.equal(await store.load('p'), undefined)
      t.same(await store.checkpoints(), new Map())
      t.same(await store.entries('p', 0, 10), [])
      t.equal(await store.entryAt('p', 1), undefined)
      t.same(await store.lookup('p', 'device:a'), [])
      t.equal(await store.positionOf('p', idOf(1)), undefined)
      t.equal(await store.cursor('alerts'), 0)
    },
  )

  t.test(
    'a commit stores documents, version and checkpoint together; the last put of a document in a batch wins; another connection reads them',
    async (t) => {
      const opened = await target.fresh(t)
      const store = await opened.open()
      await store.commit([
        changes('p', undefined, 5, {
          version: 3,
          puts: [
            ['devices', 'd1', JSON.stringify({ n: 1 })],
            ['devices', 'd2', JSON.stringify({ n: 2, nested: { s: 'é"\\' } })],
            ['devices', 'd1', JSON.stringify({ n: 11 })],
            ['homes', 'd1', JSON.stringify(['same id, another collection'])],
          ],
        }),
        changes('q', undefined, 3, { puts: [['c', 'x', 'null']] }),
      ])
      await store.commit([
        changes('p', 5, 9, {
          version: 3,
          puts: [['devices', 'd3', '{}']],
          deletes: [
            ['devices', 'd2'],
            ['devices', 'never-stored'],
          ],
        }),
      ])
      const other = await opened.open()
      const p = await other.load('p')
      t.match(p, { version: 3, position: 9 })
      t.equal(p?.incomplete, undefined)
      t.same(
        p?.docs.sort((a, b) => `${a[0]}/${a[1]}`.localeCompare(`${b[0]}/${b[1]}`)),
        [
          ['devices', 'd1', { n: 11 }],
          ['devices', 'd3', {}],
          ['homes', 'd1', ['same id, another collection']],
        ],
      )
      t.same((await other.load('q'))?.docs, [['c', 'x', null]])
      t.same(
        await other.checkpoints(),
        new Map([
          ['p', 9],
          ['q', 3],
        ]),
      )
    },
  )

  t.test(
    'a commit whose expected position is not the stored one is refused, and nothing of it is kept, not even the changes of the other projections in it',
    async (t) => {
      const opened = await target.fresh(t)
      const store = await opened.open()
      const first = EVENTS.slice(0, 4)
      await store.commit([
        changes('p', undefined, 4, { puts: [['c', 'kept', '1']], entries: rowsOf(first) }),
        changes('q', undefined, 4),
      ])
      const refused = [
        // q is right, p is stale: q's changes go too
        [
          changes('q', 4, 14, { puts: [['c', 'lost', '1']], entries: rowsOf(EVENTS.slice(4)) }),
          changes('p', 2, 14, { puts: [['c', 'lost', '1']] }),
        ],
        [changes('p', 9, 14, { deletes: [['c', 'kept']] })],
        [changes('p', undefined, 14)],
        [changes('new', 0, 14)],
      ]
      for (const batch of refused) {
        const err = await store.commit(batch).catch((e: unknown) => e)
        t.type(
          err,
          WrongExpectedRevisionError,
          `refused: ${batch.map((c) => `${c.name} expecting ${c.expectedPosition}`).join(', ')}`,
        )
        t.match(err, { code: 'KENNEL_ERR_WRONG_EXPECTED_REVISION' })
      }
      for (const reader of [store, await opened.open()]) {
        t.same(
          await reader.checkpoints(),
          new Map([
            ['p', 4],
            ['q', 4],
          ]),
          'the checkpoints did not move',
        )
        t.same((await reader.load('p'))?.docs, [['c', 'kept', 1]])
        t.same((await reader.load('q'))?.docs, [])
        t.same(shown(await reader.entries('q', 0, 100)), [], 'no entry of the refused batch')
        t.same(await reader.lookup('q', 'device:a'), [], 'no key of the refused batch')
        t.same(shown(await reader.entries('p', 0, 100)), expected(first))
      }
      await store.commit([changes('q', 4, 14, { entries: rowsOf(EVENTS.slice(4)) })])
      t.same(
        await store.lookup('q', 'device:a'),
        [5, 10, 7, 13, 14],
        'the same batch commits once the expected position is right',
      )
    },
  )

  t.test(
    'two writers of one projection: the second commit from the same checkpoint is refused, also for the first commit of all',
    async (t) => {
      const opened = await target.fresh(t)
      const [a, b] = [await opened.open(), await opened.open()]
      await a.commit([changes('p', undefined, 1, { puts: [['c', 'by', '"a"']] })])
      await t.rejects(
        b.commit([changes('p', undefined, 1, { puts: [['c', 'by', '"b"']] })]),
        WrongExpectedRevisionError,
      )
      await b.commit([changes('p', 1, 2, { puts: [['c', 'by', '"b"']] })])
      await t.rejects(a.commit([changes('p', 1, 2, { puts: [['c', 'by', '"a again"']] })]), WrongExpectedRevisionError)
      t.same((await a.load('p'))?.docs, [['c', 'by', 'b']])
      t.equal((await a.load('p'))?.position, 2)
    },
  )

  t.test(
    'entries read back in position order, by page and one at a time, across commits and gaps in positions',
    async (t) => {
      const store = await (await target.fresh(t)).open()
      await store.commit([changes('p', undefined, 5, { entries: rowsOf(EVENTS.slice(0, 5)) })])
      await store.commit([changes('p', 5, 14, { entries: rowsOf(EVENTS.slice(5), 5) })])
      t.same(shown(await store.entries('p', 0, 100)), expected(EVENTS))
      const paged: StoredEntry[] = []
      for (let after = 0; ; ) {
        const page = await store.entries('p', after, 3)
        if (page.length === 0) break
        t.ok(page.length <= 3)
        paged.push(...page)
        after = page.at(-1)!.position
      }
      t.same(shown(paged), expected(EVENTS), 'pages of 3 give every entry once')
      t.same(
        shown(await store.entries('p', 7, 2)),
        expected(EVENTS.slice(7, 9), 7),
        'after a position just before a gap',
      )
      t.same(shown(await store.entries('p', 8, 2)), expected(EVENTS.slice(7, 9), 7), 'after a position inside the gap')
      t.same(shown(await store.entries('p', 14, 10)), [])
      t.same(shown(await Promise.all([1, 7, 8, 10, 14, 15].map((p) => store.entryAt('p', p)))), [
        ...expected([EVENTS[0]!]),
        ...expected([EVENTS[6]!], 6),
        '-',
        ...expected([EVENTS[7]!], 7),
        ...expected([EVENTS[11]!], 11),
        '-',
      ])
      t.same(shown(await store.entries('other', 0, 100)), [], "another projection's entries are its own")
    },
  )

  t.test('digests of any length are kept as given', async (t) => {
    const store = await (await target.fresh(t)).open()
    const rows = rowsOf(EVENTS.slice(0, 4))
    rows[1]!.entry = { ...rows[1]!.entry, digest: digestOf(2, 20) }
    rows[2]!.entry = { ...rows[2]!.entry, digest: digestOf(3, 64) }
    await store.commit([changes('p', undefined, 4, { entries: rows })])
    t.same(
      (await store.entries('p', 0, 10)).map((e) => e.digest.toString('hex')),
      [digestOf(1), digestOf(2, 20), digestOf(3, 64), digestOf(4)].map((d) => d.toString('hex')),
    )
  })

  t.test(
    'lookups: positions indexed under a key in time order, within [since, until), up to a limit; event ids resolve to their positions',
    async (t) => {
      const store = await (await target.fresh(t)).open()
      await store.commit([changes('p', undefined, 14, { entries: rowsOf(EVENTS) })])
      t.same(
        await store.lookup('p', 'device:a'),
        [1, 5, 10, 7, 13, 14],
        'in time order, then position: 10 happened before 7',
      )
      t.same(await store.lookup('p', 'device:b'), [3, 10, 12])
      t.same(await store.lookup('p', 'account:x'), [3], 'a key named twice by one event is indexed once')
      t.same(await store.lookup('p', 'telemetry/device:a'), [2, 4, 6, 11])
      t.same(await store.lookup('p', 'device:a', { since: at(20) }), [5, 10, 7, 13, 14], 'since is inclusive')
      t.same(await store.lookup('p', 'device:a', { until: at(50) }), [1, 5, 10, 7], 'until is exclusive')
      t.same(await store.lookup('p', 'device:a', { since: at(21), until: at(26) }), [10])
      t.same(await store.lookup('p', 'device:a', { since: at(60), until: at(60) }), [], 'an empty window')
      t.same(await store.lookup('p', 'device:a', { limit: 2 }), [1, 5])
      t.same(await store.lookup('p', 'device:a', { since: at(20), limit: 1 }), [5])
      t.same(await store.lookup('p', 'device:a', { limit: 0 }), [])
      t.same(await store.lookup('p', 'device:none'), [])
      t.same(await store.lookup('q', 'device:a'), [], "another projection's keys are its own")
      t.same(
        await Promise.all(EVENTS.map((e) => store.positionOf('p', e.id))),
        EVENTS.map((e) => e.position),
        'every id, hex or not, short or upper-case',
      )
      t.equal(
        await store.positionOf('p', `${idOf(1).slice(0, 8)}-ffff-4000-8000-000000000000`),
        undefined,
        'an id sharing its first digits with a stored one',
      )
      t.equal(await store.positionOf('p', idOf(1).toUpperCase()), undefined, 'ids are compared exactly')
      t.equal(await store.positionOf('q', idOf(1)), undefined)
    },
  )

  t.test('entries given in columns are stored as the same entries given as rows', async (t) => {
    const store = await (await target.fresh(t)).open()
    await store.commit([changes('rows', undefined, 14, { entries: rowsOf(EVENTS) })])
    const columns = columnsOf(EVENTS.slice(0, 9), 0, 4)
    // a batch holds its columns before its rows
    await store.commit([changes('columns', undefined, 14, { columns, entries: rowsOf(EVENTS.slice(9), 9) })])
    t.same(await answers(store, 'columns'), await answers(store, 'rows'))
    t.same(shown(await store.entries('columns', 0, 100)), expected(EVENTS))
  })

  t.test(
    'a load from zero (catchingUp): once settled, every lookup answers as for batches written one by one, and another connection loads it complete',
    async (t) => {
      const opened = await target.fresh(t)
      const store = await opened.open()
      await store.commit([changes('reference', undefined, 14, { entries: rowsOf(EVENTS) })])
      await store.commit([changes('bulk', undefined, 4, { entries: rowsOf(EVENTS.slice(0, 4)), catchingUp: true })])
      await store.commit([changes('bulk', 4, 7, { columns: columnsOf(EVENTS.slice(4, 7), 4, 1), catchingUp: true })])
      // refused while catching up: what it carried is never indexed
      await t.rejects(
        store.commit([
          changes('bulk', 3, 14, {
            entries: rowsOf([{ ...EVENTS[7]!, keys: ['device:refused'] }], 7),
            catchingUp: true,
          }),
        ]),
        WrongExpectedRevisionError,
      )
      await store.commit([changes('bulk', 7, 14, { entries: rowsOf(EVENTS.slice(7), 7), catchingUp: true })])
      await store.settle()
      const other = await opened.open()
      t.match(await other.load('bulk'), { position: 14 })
      t.equal((await other.load('bulk'))?.incomplete, undefined, 'complete once settled')
      t.same(await answers(other, 'bulk'), await answers(other, 'reference'))
      t.same(await other.lookup('bulk', 'device:refused'), [], 'nothing of the refused commit')
      await store.settle()
      t.same(await answers(store, 'bulk'), await answers(other, 'reference'), 'a second settle changes nothing')
    },
  )

  t.test('closing a store settles what a load from zero deferred', async (t) => {
    const opened = await target.fresh(t)
    const store = await opened.open()
    await store.commit([changes('bulk', undefined, 14, { entries: rowsOf(EVENTS), catchingUp: true })])
    await store.close()
    const again = await opened.open()
    t.equal((await again.load('bulk'))?.incomplete, undefined)
    t.same(await again.lookup('bulk', 'device:a'), [1, 5, 10, 7, 13, 14])
    t.equal(await again.positionOf('bulk', EVENTS[9]!.id), 12)
  })

  t.test(
    'forget drops what is indexed under the forgettable prefix for events before the bound; the other keys, every entry and the other projections stay',
    async (t) => {
      const store = await (await target.fresh(t)).open()
      // in two commits: the first posting list of telemetry/device:a (2, 4) lies before the bound,
      // the second (6, 11) straddles it
      await store.commit([
        changes('p', undefined, 5, { entries: rowsOf(EVENTS.slice(0, 5)) }),
        changes('q', undefined, 14, { entries: rowsOf(EVENTS) }),
      ])
      await store.commit([changes('p', 5, 14, { entries: rowsOf(EVENTS.slice(5), 5) })])
      const idsAndEntries = async (): Promise<unknown> => {
        const { ids, entries } = (await answers(store, 'p')) as { ids: unknown; entries: unknown }
        return { ids, entries }
      }
      const before = await idsAndEntries()
      // telemetry postings of p before at(40): positions 2, 4 (device:a and device:b) and 6
      t.equal(await store.forget('p', at(40)), 4, 'how many postings were dropped')
      t.same(await store.lookup('p', 'telemetry/device:a'), [11])
      t.same(await store.lookup('p', 'telemetry/device:b'), [13])
      t.same(await store.lookup('p', 'telemetry/device:a', { since: at(0), until: at(45) }), [11], 'in a window too')
      t.same(await idsAndEntries(), before, 'event ids and entries unchanged')
      t.same(await store.lookup('p', 'device:a'), [1, 5, 10, 7, 13, 14], 'keys outside the prefix stay')
      t.same(await store.lookup('q', 'telemetry/device:a'), [2, 4, 6, 11], "another projection's stay")
      t.equal(await store.forget('p', at(40)), 0, 'a second run drops nothing')
      t.equal(await store.forget('p', at(61)), 2)
      t.same([await store.lookup('p', 'telemetry/device:a'), await store.lookup('p', 'telemetry/device:b')], [[], []])
      t.same(shown(await store.entries('p', 0, 100)), expected(EVENTS), 'every entry stays')
    },
  )

  t.test('reset forgets everything of one projection; the others and the cursors stay', async (t) => {
    const opened = await target.fresh(t)
    const store = await opened.open()
    await store.setCursor('alerts', 12)
    await store.commit([
      changes('p', undefined, 14, { puts: [['c', 'x', '1']], entries: rowsOf(EVENTS) }),
      changes('q', undefined, 14, { puts: [['c', 'y', '2']], entries: rowsOf(EVENTS) }),
    ])
    await store.reset('p')
    const other = await opened.open()
    t.equal(await other.load('p'), undefined)
    t.same(await other.checkpoints(), new Map([['q', 14]]))
    t.same(await other.entries('p', 0, 100), [])
    t.same(await other.lookup('p', 'device:a'), [])
    t.equal(await other.positionOf('p', idOf(1)), undefined)
    t.same((await other.load('q'))?.docs, [['c', 'y', 2]])
    t.same(await answers(other, 'q'), await answers(store, 'q'))
    t.equal(await other.cursor('alerts'), 12)
    await store.commit([changes('p', undefined, 2, { entries: rowsOf(EVENTS.slice(0, 2)) })])
    t.same(
      shown(await store.entries('p', 0, 100)),
      expected(EVENTS.slice(0, 2)),
      'a reset projection commits again from nothing',
    )
    await store.reset('never-stored')
  })

  t.test('cursors: the last position set, by name, seen by another connection', async (t) => {
    const opened = await target.fresh(t)
    const store = await opened.open()
    await store.setCursor('alerts', 5)
    await store.setCursor('alerts', 3)
    await store.setCursor('other', 9)
    const other = await opened.open()
    t.equal(await other.cursor('alerts'), 3)
    t.equal(await other.cursor('other'), 9)
    t.equal(await other.cursor('unset'), 0)
    t.same(await other.checkpoints(), new Map(), 'a cursor is not a checkpoint')
  })
}
