import type { EventStore, RecordedEvent } from '../infra/eventstore/port.ts'
import type { EntryColumns, EntryRow } from './readmodels/port.ts'

// A projection is an `apply` over an explicit list of event types. Read models are
// documents in named collections; `apply` is synchronous and deterministic (no clock, no
// randomness: everything it needs is in the event), so a rebuild from zero reproduces the
// incrementally built read model exactly. The runner (projections/runner.ts) keeps the
// documents in memory for O(1) reads and persists each batch's changes together with the
// projection's checkpoint in one transaction.

export interface Documents {
  get<T>(collection: string, id: string): T | undefined
  /** every document of a collection, in no particular order */
  values<T>(collection: string): Iterable<T>
}

export interface DocumentTx extends Documents {
  put(collection: string, id: string, doc: unknown): void
  delete(collection: string, id: string): void
}

/** `eventTypes: ALL_EVENTS` subscribes a projection to every event (the audit log). */
export const ALL_EVENTS: readonly string[] = Object.freeze(['*'])

/** A per-event row a projection may return from `apply`; the persistent runner stores it with
 * the batch, so that lookups by key and time window are O(log n) (the audit log, R16) and each
 * event's digest can be compared later (the Merkle leaf, R17). The in-memory follower ignores it. */
export interface ProjectionEntry {
  /** 0, 1, 2, … in the order the projection saw its events */
  ordinal: number
  /** lookup keys such as `device:d1` or `credential:cert:ab12` */
  keys: readonly string[]
  digest: Uint8Array
}

export interface Projection {
  /** unique, stable; names the checkpoint and the stored documents */
  readonly name: string
  /** bump when apply changes meaning; a stored read model of another version is rebuilt */
  readonly version: number
  /** the only event types apply receives (ALL_EVENTS: every event) */
  readonly eventTypes: readonly string[]
  // biome-ignore lint/suspicious/noConfusingVoidType: most projections' apply returns nothing; the audit log's returns its entry
  apply(tx: DocumentTx, event: RecordedEvent): void | ProjectionEntry
  /** optional, persistent runner only: called about once a second while caught up, with the
   * wall-clock time, for work that depends on time passing rather than on events (a signed tree
   * head after T seconds). May only write to the outbox (projections/outbox.ts). */
  tick?(tx: DocumentTx, now: Date): void
  /** optional, persistent runner only: a long catch-up from `after` to `head` applied without
   * the events being delivered (the audit log reads and hashes them on other threads). The
   * result must be exactly what `apply` gives event by event. */
  catchUp?(store: EventStore, after: number, head: number): CatchUpHelper | undefined
}

export interface CatchUpHelper {
  /** apply the effect of every event after the last position applied, up to and including
   * `position` (at most `head`), appending what `apply` would have returned for each, as rows
   * or in columns */
  applyThrough(tx: DocumentTx, position: number, entries: EntryRow[], columns: EntryColumns[]): Promise<void>
  stop(): Promise<void>
}

/** Documents held in memory: the read side every runner serves queries from. */
export class MemoryDocuments implements DocumentTx {
  private readonly collections = new Map<string, Map<string, unknown>>()

  get<T>(collection: string, id: string): T | undefined {
    return this.collections.get(collection)?.get(id) as T | undefined
  }

  values<T>(collection: string): Iterable<T> {
    return (this.collections.get(collection)?.values() ?? []) as Iterable<T>
  }

  put(collection: string, id: string, doc: unknown): void {
    let c = this.collections.get(collection)
    if (!c) this.collections.set(collection, (c = new Map()))
    c.set(id, doc)
  }

  delete(collection: string, id: string): void {
    this.collections.get(collection)?.delete(id)
  }

  /** every (collection, id, doc), for persistence and for comparing two read models */
  *entries(): Iterable<[string, string, unknown]> {
    for (const [collection, docs] of this.collections) for (const [id, doc] of docs) yield [collection, id, doc]
  }
}
