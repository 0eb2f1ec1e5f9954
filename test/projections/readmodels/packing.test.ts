import t from 'tap'
import {
  packAscending,
  packPostings,
  packRuns,
  unpackAscending,
  unpackPostings,
  unpackRuns,
} from '../../../projections/readmodels/packing.ts'

// The embedded read models pack positions and times as varint deltas: every value must come back
// exactly, up to 2^53 and below zero.

t.test('positions, runs of times and postings round-trip exactly', async (t) => {
  const big = Number.MAX_SAFE_INTEGER
  const positions = [1, 2, 3, 10, 1000, 2 ** 31, 2 ** 32 + 5, big - 1, big]
  t.same([...unpackAscending(packAscending(positions))], positions)
  t.same([...unpackAscending(packAscending([5, 3, -7]))], [5, 3, -7], 'out of order and negative values too')
  t.equal(
    packAscending(Array.from({ length: 1000 }, (_, i) => i + 1)).length,
    1000,
    'consecutive positions take a byte each',
  )
  const times = [1.8e12, 1.8e12, 1.8e12, 1.8e12 + 5, 0, -1, -1, 2 ** 52]
  t.same([...unpackRuns(packRuns(times))], times)
  t.ok(packRuns(Array.from({ length: 1000 }, () => 1.8e12)).length < 10, 'equal times take a few bytes in all')
  const postings = new Float64Array([3, 1.8e12, 4, 1.8e12, 90, 1.7e12, big, 0])
  t.same([...unpackPostings(packPostings(postings))], [...postings])
  t.same([...unpackPostings(packPostings(new Float64Array()))], [])
  t.throws(() => unpackPostings(Buffer.from([0x80])), RangeError, 'a truncated value is an error, not a guess')
})
