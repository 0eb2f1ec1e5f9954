import { createHash } from 'node:crypto'
import t from 'tap'
import { CompactRange, consistencyPath, inclusionPath, leafHash, subtreeRoot, verifyConsistency, verifyInclusion } from '../../../projections/audit/merkle.ts'

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
      if (n > 1 && verifyInclusion(leaves[(m + 1) % n]!, m, n, path, root)) t.fail(`wrong leaf accepted at ${m} of ${n}`)
      if (n > 1 && verifyInclusion(leaves[m]!, (m + 1) % n, n, path, root)) t.fail(`wrong index accepted at ${m} of ${n}`)
    }
  }
  t.pass('checked sizes 1-33')
})

t.test('every consistency proof verifies, and fails when either root is another', async (t) => {
  for (let n = 1; n <= 33; n++) {
    for (let m = 1; m <= n; m++) {
      const path = m === n ? [] : consistencyPath(leaves, m, n)
      const a = subtreeRoot(leaves, 0, m)
      const b = subtreeRoot(leaves, 0, n)
      if (!verifyConsistency(m, n, path, a, b)) t.fail(`${m} -> ${n}`)
      if (m < n && verifyConsistency(m, n, path, subtreeRoot(leaves, 1, m + 1), b)) t.fail(`forged first root accepted ${m} -> ${n}`)
      if (m < n && verifyConsistency(m, n, path, a, subtreeRoot(leaves, 1, n + 1))) t.fail(`forged second root accepted ${m} -> ${n}`)
    }
  }
  t.pass('checked sizes 1-33')
})
