// Refusal events are rate-limited per key without losing count (R11, R19): the first refusal of
// a block is recorded at once; later ones in the block are tallied and recorded as one event with
// their number when the block ends, by a timer that does not hold the process open, or on flush().
export class FoldedRefusals<T> {
  private readonly blocks = new Map<string, { until: number; tally: number; latest?: T; timer?: NodeJS.Timeout }>()

  constructor(
    private readonly blockMs: number,
    /** appends the event for `count` refusals, the latest of which was `subject`; reports its own errors */
    private readonly write: (subject: T, count: number) => Promise<void>,
  ) {}

  /** true: this refusal opens a block, so the caller records it now (count 1); false: tallied */
  count(key: string, nowMs: number, subject: T): boolean {
    const block = this.blocks.get(key)
    if (block === undefined || block.until <= nowMs) {
      if (block?.timer) void this.close(key)
      if (this.blocks.size > 100_000)
        for (const [k, b] of this.blocks) if (b.until <= nowMs && !b.timer) this.blocks.delete(k)
      this.blocks.set(key, { until: nowMs + this.blockMs, tally: 0 })
      return true
    }
    block.tally++
    block.latest = subject
    block.timer ??= setTimeout(() => void this.close(key), Math.max(0, block.until - nowMs)).unref()
    return false
  }

  /** record every tally now (on shutdown) */
  async flush(): Promise<void> {
    await Promise.all([...this.blocks.keys()].map((key) => this.close(key)))
  }

  private async close(key: string): Promise<void> {
    const block = this.blocks.get(key)
    if (!block?.timer) return
    clearTimeout(block.timer)
    this.blocks.delete(key)
    await this.write(block.latest!, block.tally)
  }
}
