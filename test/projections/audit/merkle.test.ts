import { createHash } from 'node:crypto'
import t from 'tap'
import {
  CompactRange,
  consistencyPath,
  emptyRoot,
  inclusionPath,
  leafHash,
  subtreeRoot,
  verifyConsistency,
  verifyInclusion,
} from '../../../projections/audit/merkle.ts'

const leaves = Array.from({ length: 40 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)))

t.test('the incremental root equals the RFC 9162 MTH at every size', async (t) => {
  const range = new CompactRange()
  t.equal(range.root().toString('hex'), createHash('sha256').digest('hex'), 'empty tree: SHA-256 of nothing')
  for (let n = 1; n <= leaves.length; n++) {
    range.push(leaves[n - 1]!)
    t.ok(range.root().equals(subtreeRoot(leaves, 0, n)), `size ${n}`)
  }
})

t.test('every inclusion proof verifies, and fails for another leaf, index or root', async (t) => {
  for (let n = 1; n <= 33; n++) {
    const root = subtreeRoot(leaves, 0, n)
    for (let m = 0; m < n; m++) {
      const path = inclusionPath(leaves, m, n)
      if (!verifyInclusion(leaves[m]!, m, n, path, root)) t.fail(`leaf ${m} of ${n}`)
      if (n > 1 && verifyInclusion(leaves[(m + 1) % n]!, m, n, path, root))
        t.fail(`wrong leaf accepted at ${m} of ${n}`)
      if (n > 1 && verifyInclusion(leaves[m]!, (m + 1) % n, n, path, root))
        t.fail(`wrong index accepted at ${m} of ${n}`)
    }
  }
  t.pass('checked sizes 1-33')
})

t.test(
  'an inclusion proof is refused for an index below zero or beyond the safe integers, which JS bit operators would wrap onto a real leaf',
  async (t) => {
    for (let n = 2; n <= 33; n++) {
      const root = subtreeRoot(leaves, 0, n)
      for (let m = 0; m < n; m++) {
        const path = inclusionPath(leaves, m, n)
        for (const k of [1, 2, 3, 4, 5, 6, 7, 8, 31, 32, 33, 52]) {
          if (verifyInclusion(leaves[m]!, m - 2 ** k, n, path, root))
            t.fail(`index ${m} - 2^${k} accepted for leaf ${m} of ${n}`)
        }
        if (verifyInclusion(leaves[m]!, m + 2 ** 53, n, path, root))
          t.fail(`index ${m} + 2^53 accepted for leaf ${m} of ${n}`)
        if (verifyInclusion(leaves[m]!, m + 0.5, n, path, root))
          t.fail(`index ${m} + 0.5 accepted for leaf ${m} of ${n}`)
      }
    }
    t.notOk(verifyInclusion(leaves[0]!, 0, 0, [], leaves[0]!), 'no leaf is in the empty tree')
    t.notOk(verifyInclusion(leaves[0]!, 0, 2 ** 53, [], leaves[0]!), 'a tree size beyond the safe integers')
    t.pass('checked sizes 2-33')
  },
)

t.test(
  'a consistency proof is refused unless both sizes are positive safe integers, the first not larger',
  async (t) => {
    const root = (n: number) => subtreeRoot(leaves, 0, n)
    const path = consistencyPath(leaves, 5, 20)
    t.ok(verifyConsistency(5, 20, path, root(5), root(20)), 'the real proof verifies')
    t.notOk(verifyConsistency(5 - 2 ** 32, 20, path, root(5), root(20)), 'a first size wrapped by 2^32')
    t.notOk(verifyConsistency(5, 20 + 2 ** 32, path, root(5), root(20)), 'a second size wrapped by 2^32')
    t.notOk(verifyConsistency(5 + 2 ** 53, 20 + 2 ** 53, path, root(5), root(20)), 'sizes beyond the safe integers')
    t.notOk(verifyConsistency(0, 20, [], emptyRoot(), root(20)), 'a first size of 0')
    t.notOk(verifyConsistency(-1, -1, [], root(5), root(5)), 'equal negative sizes')
    t.notOk(verifyConsistency(5.5, 5.5, [], root(5), root(5)), 'equal fractional sizes')
    t.notOk(verifyConsistency(20, 5, path, root(20), root(5)), 'the first larger than the second')
  },
)

t.test('every consistency proof verifies, and fails when either root is another', async (t) => {
  for (let n = 1; n <= 33; n++) {
    for (let m = 1; m <= n; m++) {
      const path = m === n ? [] : consistencyPath(leaves, m, n)
      const a = subtreeRoot(leaves, 0, m)
      const b = subtreeRoot(leaves, 0, n)
      if (!verifyConsistency(m, n, path, a, b)) t.fail(`${m} -> ${n}`)
      if (m < n && verifyConsistency(m, n, path, subtreeRoot(leaves, 1, m + 1), b))
        t.fail(`forged first root accepted ${m} -> ${n}`)
      if (m < n && verifyConsistency(m, n, path, a, subtreeRoot(leaves, 1, n + 1)))
        t.fail(`forged second root accepted ${m} -> ${n}`)
    }
  }
  t.pass('checked sizes 1-33')
})
