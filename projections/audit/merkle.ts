import { createHash, hash } from 'node:crypto'
import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { canonicalEventText } from './canonical.ts'

// RFC 9162 §2.1 Merkle tree hash: leaf = SHA-256(0x00 || bytes), node = SHA-256(0x01 || l || r),
// the empty tree's hash = SHA-256(""). Inclusion (§2.1.3) and consistency (§2.1.4) proofs with
// the RFC's verification algorithms, so any RFC 9162 verifier can check them.

const LEAF = Buffer.from([0])
const NODE = Buffer.from([1])

export const leafHash = (bytes: Uint8Array): Buffer => createHash('sha256').update(LEAF).update(bytes).digest()
export const emptyRoot = (): Buffer => createHash('sha256').digest()

// One-shot hashes over a reused buffer: a Hash object per leaf and node cost several times more
// than the digest itself (a rebuild hashes two million of them per million events). The digest
// comes back as a latin1 ('binary') string, one char per byte, written into a pooled Buffer: on Node 20
// that is about half the cost of hash()'s own 'buffer' output.
const pair = Buffer.alloc(65, 1)
const sha256Into = (data: string | Uint8Array, out: Buffer, offset: number): void =>
  void out.write(hash('sha256', data, 'binary'), offset, 32, 'latin1')
const sha256 = (data: string | Uint8Array): Buffer => {
  const out = Buffer.allocUnsafe(32)
  sha256Into(data, out, 0)
  return out
}
export const nodeHash = (l: Uint8Array, r: Uint8Array): Buffer => {
  if (l.length !== 32 || r.length !== 32) return createHash('sha256').update(NODE).update(l).update(r).digest()
  pair.set(l, 1)
  pair.set(r, 33)
  return sha256(pair)
}

/** leafHash of the text's UTF-8 bytes: U+0000 encodes as the single byte 0x00, the leaf prefix */
export const leafOfCanonicalText = (text: string): Buffer => sha256(`\u0000${text}`)

/** leafOfCanonicalText written at `offset` of `out` */
export const leafOfCanonicalTextInto = (text: string, out: Buffer, offset: number): void =>
  sha256Into(`\u0000${text}`, out, offset)

export const eventLeaf = (e: RecordedEvent): Buffer => leafOfCanonicalText(canonicalEventText(e))

/** The right edge of a growing tree: the roots of its perfect subtrees, largest first. Appending a
 * leaf is O(1) amortised; the root of the current size is a right fold of the stack. */
export class CompactRange {
  constructor(
    public size = 0,
    /** hashes of perfect subtrees; subtree i has 2^bit leaves for the set bits of size, high to low */
    public stack: Buffer[] = [],
  ) {}

  push(leaf: Buffer): void {
    let hash = leaf
    let n = this.size
    while (n & 1) {
      hash = nodeHash(this.stack.pop()!, hash)
      n >>= 1
    }
    this.stack.push(hash)
    this.size++
  }

  /** push(leaf) for a leaf whose merges with the last `levels` subtrees on the stack were done
   * elsewhere: `merged` is the root of those 2^levels leaves (a catch-up thread's subtree hashes, catch-up-thread.ts) */
  pushMerged(merged: Buffer, levels: number): void {
    let hash = merged
    this.stack.length -= levels
    let n = this.size >> levels
    while (n & 1) {
      hash = nodeHash(this.stack.pop()!, hash)
      n >>= 1
    }
    this.stack.push(hash)
    this.size++
  }

  root(): Buffer {
    if (this.stack.length === 0) return emptyRoot()
    let root = this.stack[this.stack.length - 1]!
    for (let i = this.stack.length - 2; i >= 0; i--) root = nodeHash(this.stack[i]!, root)
    return root
  }
}

const largestPowerOfTwoBelow = (n: number): number => {
  let k = 1
  while (k * 2 < n) k *= 2
  return k
}

/** MTH(D[lo:hi]) over stored leaf hashes */
export function subtreeRoot(leaves: readonly Buffer[], lo: number, hi: number): Buffer {
  const n = hi - lo
  if (n === 0) return emptyRoot()
  if (n === 1) return leaves[lo]!
  const k = largestPowerOfTwoBelow(n)
  return nodeHash(subtreeRoot(leaves, lo, lo + k), subtreeRoot(leaves, lo + k, hi))
}

/** PATH(m, D[0:n]) — RFC 9162 §2.1.3.1 */
export function inclusionPath(leaves: readonly Buffer[], m: number, n: number): Buffer[] {
  const path = (m: number, lo: number, hi: number): Buffer[] => {
    const size = hi - lo
    if (size <= 1) return []
    const k = largestPowerOfTwoBelow(size)
    return m < k
      ? [...path(m, lo, lo + k), subtreeRoot(leaves, lo + k, hi)]
      : [...path(m - k, lo + k, hi), subtreeRoot(leaves, lo, lo + k)]
  }
  if (m < 0 || m >= n || n > leaves.length) throw new RangeError(`leaf ${m} is not in a tree of ${n}`)
  return path(m, 0, n)
}

// The verifiers halve with arithmetic, not bit operators: `>>` and `&` truncate to 32 bits, and
// a negative index would act as index − 2^depth, verifying with another leaf's path.
const odd = (n: number): boolean => n % 2 === 1
const half = (n: number): number => Math.floor(n / 2)
const isTreeSize = (n: number): boolean => Number.isSafeInteger(n) && n >= 1
function isPowerOfTwo(n: number): boolean {
  while (n > 1 && !odd(n)) n = half(n)
  return n === 1
}

/** RFC 9162 §2.1.3.2 */
export function verifyInclusion(
  leaf: Buffer,
  index: number,
  size: number,
  path: readonly Buffer[],
  root: Buffer,
): boolean {
  if (!isTreeSize(size) || !Number.isSafeInteger(index) || index < 0 || index >= size) return false
  let fn = index
  let sn = size - 1
  let r = leaf
  for (const p of path) {
    if (sn === 0) return false
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r)
      if (!odd(fn)) {
        while (fn !== 0 && !odd(fn)) {
          fn = half(fn)
          sn = half(sn)
        }
      }
    } else {
      r = nodeHash(r, p)
    }
    fn = half(fn)
    sn = half(sn)
  }
  return sn === 0 && r.equals(root)
}

/** PROOF(m, D[0:n]) — RFC 9162 §2.1.4.1 */
export function consistencyPath(leaves: readonly Buffer[], m: number, n: number): Buffer[] {
  const sub = (m: number, lo: number, hi: number, whole: boolean): Buffer[] => {
    const size = hi - lo
    if (m === size) return whole ? [] : [subtreeRoot(leaves, lo, hi)]
    const k = largestPowerOfTwoBelow(size)
    return m <= k
      ? [...sub(m, lo, lo + k, whole), subtreeRoot(leaves, lo + k, hi)]
      : [...sub(m - k, lo + k, hi, false), subtreeRoot(leaves, lo, lo + k)]
  }
  if (m < 1 || m > n || n > leaves.length) throw new RangeError(`no consistency proof from ${m} to ${n}`)
  return sub(m, 0, n, true)
}

/** RFC 9162 §2.1.4.2 */
export function verifyConsistency(
  m: number,
  n: number,
  path: readonly Buffer[],
  firstRoot: Buffer,
  secondRoot: Buffer,
): boolean {
  if (!isTreeSize(m) || !isTreeSize(n) || m > n) return false
  if (m === n) return path.length === 0 && firstRoot.equals(secondRoot)
  if (path.length === 0) return false
  let proof = [...path]
  if (isPowerOfTwo(m)) proof = [firstRoot, ...proof]
  let fn = m - 1
  let sn = n - 1
  while (odd(fn)) {
    fn = half(fn)
    sn = half(sn)
  }
  let fr = proof[0]!
  let sr = proof[0]!
  for (const c of proof.slice(1)) {
    if (sn === 0) return false
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr)
      sr = nodeHash(c, sr)
      if (!odd(fn)) {
        while (fn !== 0 && !odd(fn)) {
          fn = half(fn)
          sn = half(sn)
        }
      }
    } else {
      sr = nodeHash(sr, c)
    }
    fn = half(fn)
    sn = half(sn)
  }
  return sn === 0 && fr.equals(firstRoot) && sr.equals(secondRoot)
}
