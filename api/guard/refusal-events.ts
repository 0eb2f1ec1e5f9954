// Refusal events are themselves rate-limited: one event per key per block, so that an attacker
// hammering a limit cannot turn it into unbounded appends (the metrics still count every one).
export class OncePerBlock {
  private readonly until = new Map<string, number>()

  shouldRecord(key: string, nowMs: number, blockMs: number): boolean {
    const until = this.until.get(key)
    if (until !== undefined && until > nowMs) return false
    if (this.until.size > 100_000) for (const [k, u] of this.until) if (u <= nowMs) this.until.delete(k)
    this.until.set(key, nowMs + blockMs)
    return true
  }
}
