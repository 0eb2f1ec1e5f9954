import type { ProjectionEntry } from '../projection.ts'

// Where the persistent runner keeps read models: documents, per-event entries (the audit log's
// index and Merkle leaves) and one checkpoint per projection, all written in one transaction so a
// crash never separates a read-model change from the checkpoint that produced it.

export interface StoredProjection {
  version: number
  /** position of the last event whose effect is stored */
  position: number
  docs: Array<[collection: string, id: string, doc: unknown]>
  /** set when a from-zero load was interrupted before its key index was written: the stored
   * documents and entries are consistent but lookups would miss keys, so the runner rebuilds */
  incomplete?: true
}

export interface EntryRow {
  position: number
  /** id of the event at `position`, for positionOf */
  eventId: string
  time: string
  entry: ProjectionEntry
}

/** Entries in columns, the form a catch-up helper produces (Projection.catchUp): entry i
 * (0 ≤ i < length) is the event at positions[start + i], with the leaf digests[(start + i) * 32 …],
 * ordinal firstOrdinal + i and keys keyNames[keys[k]] for keyStarts[start + i] ≤ k < keyStarts[start + i + 1]. */
export interface EntryColumns {
  start: number
  length: number
  positions: Float64Array
  eventIds: readonly string[]
  times: readonly string[]
  /** 32 bytes per entry */
  digests: Uint8Array
  firstOrdinal: number
  keyNames: readonly string[]
  keys: Int32Array
  keyStarts: Int32Array
}

/** the rows of entries in columns (stores that keep one row per entry) */
export function* entryRowsOf(columns: readonly EntryColumns[]): Iterable<EntryRow> {
  for (const c of columns) {
    for (let i = 0; i < c.length; i++) {
      const at = c.start + i
      const keys: string[] = []
      for (let k = c.keyStarts[at]!; k < c.keyStarts[at + 1]!; k++) keys.push(c.keyNames[c.keys[k]!]!)
      yield {
        position: c.positions[at]!,
        eventId: c.eventIds[at]!,
        time: c.times[at]!,
        entry: { ordinal: c.firstOrdinal + i, keys, digest: c.digests.subarray(at * 32, at * 32 + 32) },
      }
    }
  }
}

export interface ProjectionChanges {
  name: string
  version: number
  /** the checkpoint this writer last loaded or wrote (undefined: none stored); the commit fails
   * with KENNEL_ERR_WRONG_EXPECTED_REVISION when another process has moved it since */
  expectedPosition: number | undefined
  position: number
  /** documents serialised when the batch was cut, so later in-memory changes cannot leak in */
  puts: Array<[collection: string, id: string, json: string]>
  deletes: Array<[collection: string, id: string]>
  entries: EntryRow[]
  /** entries of a catch-up in bulk; a batch holds them before any `entries` */
  columns?: EntryColumns[]
  /** the runner is catching up: a store may defer index writes of a from-zero load until
   * `settle` (never past a crash: see StoredProjection.incomplete) */
  catchingUp?: boolean
}

/** Keys under this prefix can be dropped by event time (EntryLookups.forget), and the stores
 * index them for it; the audit log puts per-message metadata there (projections/audit/lookup-keys.ts). */
export const FORGETTABLE_KEY_PREFIX = 'telemetry/'

export interface StoredEntry {
  ordinal: number
  position: number
  time: string
  digest: Buffer
}

export interface LookupOptions {
  /** inclusive ISO time */
  since?: string
  /** exclusive ISO time */
  until?: string
  limit?: number
}

/** What the persistent runner and every projection need: checkpoints, documents and the
 * transaction that writes them with a batch's entries; a cursor apart from them. */
export interface ReadModelStore {
  readonly kind: 'sqlite' | 'postgres'
  load(name: string): Promise<StoredProjection | undefined>
  /** the stored checkpoint of every projection that has one, by name, without loading documents:
   * any process reads how far the projector has come (readiness, `kennel projections status`) */
  checkpoints(): Promise<Map<string, number>>
  commit(changes: readonly ProjectionChanges[]): Promise<void>
  /** write whatever index a from-zero load deferred; after it every lookup is complete */
  settle(): Promise<void>
  /** forget everything stored for a projection (before a rebuild) */
  reset(name: string): Promise<void>
  /** a named position kept apart from the projections (alert delivery); 0 when unset */
  cursor(name: string): Promise<number>
  setCursor(name: string, position: number): Promise<void>
  close(): Promise<void>
}

/** Reads of the entries a projection stored (ProjectionEntry), which only the audit log returns
 * and only the audit log reads: lookups by key and time window, by event id, the Merkle leaves
 * in order, and retention of the key index. Both stores implement it beside ReadModelStore. */
export interface EntryLookups {
  /** drop from the key index of `name` what is indexed under FORGETTABLE_KEY_PREFIX keys for
   * events older than `before` (ISO time): retention (R12). Entries (the Merkle leaves) stay, and
   * a rebuild indexes the events again. Returns how many postings were dropped. */
  forget(name: string, before: string): Promise<number>
  /** positions of the entries indexed under `key`, ascending, within the time window */
  lookup(name: string, key: string, options?: LookupOptions): Promise<number[]>
  /** position at which the projection recorded the event with this id */
  positionOf(name: string, eventId: string): Promise<number | undefined>
  entryAt(name: string, position: number): Promise<StoredEntry | undefined>
  /** entries in position order, after the given position */
  entries(name: string, afterPosition: number, limit: number): Promise<StoredEntry[]>
}
