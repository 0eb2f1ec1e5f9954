import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { KennelError } from '../../../infra/errors.ts'
import { handleCommand, loadStream, type Decider } from '../../../infra/eventstore/command.ts'
import { openEventStore } from '../../../infra/eventstore/open.ts'
import type { EventStore } from '../../../infra/eventstore/port.ts'

// The command handler: read, fold, decide, append with the revision read, decide again after a
// concurrent append, a bounded number of times.

type CounterEvent = { type: 'Counted'; data: { n: number } }
const counter: Decider<{ upTo: number }, number, CounterEvent> = {
  initialState: 0,
  evolve: (count, e) => count + e.data.n,
  decide: ({ upTo }, count) => {
    if (count >= upTo) throw new KennelError('KENNEL_ERR_NOT_FOUND', `already ${count}`)
    return [{ type: 'Counted', data: { n: 1 } }]
  },
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-command-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
let n = 0
async function fresh(t: Test): Promise<EventStore> {
  const store = await openEventStore(`sqlite:${path.join(dir, `events-${n++}.sqlite`)}`, { environment: 'test' })
  t.teardown(() => store.close())
  return store
}

t.test('decides on the folded stream and appends with the revision it read', async (t) => {
  const store = await fresh(t)
  const first = await handleCommand(store, 'c-1', counter, (count) => counter.decide({ upTo: 2 }, count), {
    metadata: { actor: 'test:a' },
  })
  t.same(
    { state: first.state, revision: first.revision, events: first.events },
    { state: 1, revision: 0, events: [{ type: 'Counted', data: { n: 1 } }] },
  )
  const second = await handleCommand(store, 'c-1', counter, (count) => counter.decide({ upTo: 2 }, count))
  t.equal(second.state, 2)
  await t.rejects(
    handleCommand(store, 'c-1', counter, (count) => counter.decide({ upTo: 2 }, count)),
    { code: 'KENNEL_ERR_NOT_FOUND' },
    'the decision refuses on the stream as folded',
  )
  const recorded = await store.readStream('c-1')
  t.same(
    recorded.map((e) => [e.revision, e.metadata.actor]),
    [
      [0, 'test:a'],
      [1, undefined],
    ],
  )
  t.same(await loadStream(store, 'c-1', counter), { state: 2, revision: 1 })
  t.same(await loadStream(store, 'c-none', counter), { state: 0, revision: -1 })
})

t.test('a decision that adds nothing appends nothing', async (t) => {
  const store = await fresh(t)
  const handled = await handleCommand(store, 'c-2', counter, () => [])
  t.same(handled, { state: 0, events: [], revision: -1, position: undefined })
  t.same(await store.readStream('c-2'), [])
})

t.test('an append that lands between the read and the append makes it decide again on the new state', async (t) => {
  const store = await fresh(t)
  const seen: number[] = []
  const handled = await handleCommand(store, 'c-3', counter, async (count) => {
    seen.push(count)
    if (seen.length === 1) await store.append('c-3', [{ type: 'Counted', data: { n: 1 } }])
    return counter.decide({ upTo: 5 }, count)
  })
  t.same(seen, [0, 1], 'decided twice, the second time on the concurrent event')
  t.same({ state: handled.state, revision: handled.revision }, { state: 2, revision: 1 })
  t.same((await store.readStream('c-3')).length, 2)

  const refused: number[] = []
  await t.rejects(
    handleCommand(store, 'c-3', counter, async (count) => {
      refused.push(count)
      if (refused.length === 1) await store.append('c-3', [{ type: 'Counted', data: { n: 1 } }])
      return counter.decide({ upTo: 3 }, count)
    }),
    { code: 'KENNEL_ERR_NOT_FOUND' },
    'the second decision refuses: the concurrent event made it moot',
  )
})

t.test('conflicts are retried a bounded number of times, other errors not at all', async (t) => {
  const store = await fresh(t)
  let calls = 0
  const contended = (): Promise<unknown> =>
    handleCommand(
      store,
      'c-4',
      counter,
      async (count) => {
        calls++
        await store.append('c-4', [{ type: 'Counted', data: { n: 1 } }])
        return counter.decide({ upTo: 100 }, count)
      },
      { attempts: 4 },
    )
  await t.rejects(contended(), { code: 'KENNEL_ERR_WRONG_EXPECTED_REVISION' })
  t.equal(calls, 4, 'four tries, then the conflict reaches the caller')

  calls = 0
  await t.rejects(
    handleCommand(store, 'c-4', counter, () => {
      calls++
      throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no')
    }),
    { code: 'KENNEL_ERR_NOT_FOUND' },
  )
  t.equal(calls, 1)
})

t.test('appends through the append it is given, with metadata per event', async (t) => {
  const store = await fresh(t)
  const through: string[] = []
  await handleCommand(
    store,
    'c-5',
    counter,
    () => [
      { type: 'Counted', data: { n: 1 } },
      { type: 'Counted', data: { n: 2 } },
    ],
    {
      append: (stream, events, expectedRevision) => {
        through.push(`${stream}@${String(expectedRevision)}`)
        return store.append(stream, events, { expectedRevision })
      },
      metadata: (e) => ({ actor: `test:${e.data.n}` }),
    },
  )
  t.same(through, ['c-5@no_stream'])
  t.same(
    (await store.readStream('c-5')).map((e) => e.metadata.actor),
    ['test:1', 'test:2'],
  )
})
