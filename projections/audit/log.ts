import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import type { EntryLookups, LookupOptions } from '../readmodels/port.ts'
import { TELEMETRY_KEY_PREFIX } from './lookup-keys.ts'
import { AUDIT_PROJECTION } from './projection.ts'

// Queries over the audit log read model: the index gives positions in O(log n) per key, the
// events themselves come from the store.

export type AuditKey =
  `${'actor' | 'credential' | 'device' | 'household' | 'account' | 'recording' | 'serial'}:${string}`

export class AuditLog {
  constructor(
    private readonly store: EventStore,
    private readonly readModels: EntryLookups,
  ) {}

  /** positions of events indexed under any of the keys, ascending, within [since, until); per-message
   * metadata (TELEMETRY_TYPES) is found only within the telemetry retention */
  async positions(keys: readonly AuditKey[], window: LookupOptions = {}): Promise<number[]> {
    const all = new Set<number>()
    for (const key of keys) {
      for (const indexed of [key, `${TELEMETRY_KEY_PREFIX}${key}`])
        for (const p of await this.readModels.lookup(AUDIT_PROJECTION, indexed, window)) all.add(p)
    }
    return [...all].sort((a, b) => a - b)
  }

  async events(
    keys: readonly AuditKey[],
    window: LookupOptions = {},
    types?: readonly string[],
  ): Promise<RecordedEvent[]> {
    const out: RecordedEvent[] = []
    for (const p of await this.positions(keys, window)) {
      const [e] = await this.store.readAll({ after: p - 1, maxCount: 1 })
      if (e && e.position === p && (!types || types.includes(e.type))) out.push(e)
    }
    return out
  }
}
