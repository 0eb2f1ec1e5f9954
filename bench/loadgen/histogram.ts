// Latencies as a histogram, so that every message is counted without keeping every sample:
// 10 µs buckets up to 100 ms, 1 ms buckets up to 60 s (anything slower lands in the last).
// Load processes send theirs as sparse [bucket, count] pairs and the driver merges them.

const FINE_MS = 0.01
const FINE_LIMIT_MS = 100
const COARSE_MS = 1
const LIMIT_MS = 60_000
const FINE_BUCKETS = FINE_LIMIT_MS / FINE_MS
const BUCKETS = FINE_BUCKETS + (LIMIT_MS - FINE_LIMIT_MS) / COARSE_MS

export type SparseHistogram = Array<[number, number]>

export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS)
  count = 0

  record(ms: number): void {
    const i =
      ms < FINE_LIMIT_MS
        ? Math.max(0, Math.floor(ms / FINE_MS))
        : Math.min(BUCKETS - 1, FINE_BUCKETS + Math.floor((ms - FINE_LIMIT_MS) / COARSE_MS))
    this.counts[i]!++
    this.count++
  }

  toSparse(): SparseHistogram {
    const out: SparseHistogram = []
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i] !== 0) out.push([i, this.counts[i]!])
    return out
  }

  add(sparse: SparseHistogram): void {
    for (const [i, n] of sparse) {
      this.counts[i]! += n
      this.count += n
    }
  }

  /** the upper edge of the bucket holding the p-th percentile, in ms; NaN when empty */
  percentile(p: number): number {
    if (this.count === 0) return NaN
    const rank = Math.max(1, Math.ceil((p / 100) * this.count))
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!
      if (seen >= rank) return i < FINE_BUCKETS ? (i + 1) * FINE_MS : FINE_LIMIT_MS + (i - FINE_BUCKETS + 1) * COARSE_MS
    }
    return LIMIT_MS
  }
}
