import t from 'tap'
import { FoldedRefusals } from '../../../infra/net/folded-refusals.ts'

t.test('a burst that then stops is recorded with its count when the block ends', async (t) => {
  const written: Array<[string, number]> = []
  const folded = new FoldedRefusals<string>(100, async (subject, count) => void written.push([subject, count]))
  const start = Date.now()
  t.same(
    [
      folded.count('k', start, 'a'),
      folded.count('k', start + 1, 'b'),
      folded.count('k', start + 2, 'c'),
      folded.count('other', start + 2, 'x'),
    ],
    [true, false, false, true],
    'the first of each key is recorded by the caller, the rest tallied',
  )
  t.same(written, [], 'nothing written before the block ends')
  await new Promise((r) => setTimeout(r, 200))
  t.same(written, [['c', 2]], 'one event for the two tallied refusals, none for a key without any')
  t.equal(folded.count('k', Date.now(), 'd'), true, 'after the block a refusal opens a new one')
  await folded.flush()
  t.same(written, [['c', 2]], 'flush writes nothing without a tally')
})

t.test('flush records the open tallies at once', async (t) => {
  const written: Array<[string, number]> = []
  const folded = new FoldedRefusals<string>(60_000, async (subject, count) => void written.push([subject, count]))
  folded.count('k', 0, 'a')
  folded.count('k', 1, 'b')
  await folded.flush()
  t.same(written, [['b', 1]])
  await folded.flush()
  t.same(written, [['b', 1]], 'and only once')
})
