import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import type { ReadModelStore, StoredEntry } from '../readmodels/port.ts'
import { headSignatureValid, readHeads, type StoredHead } from './heads.ts'
import type { AuditVerifier } from './keys.ts'
import { CompactRange, eventLeaf } from './merkle.ts'
import { AUDIT_PROJECTION } from './projection.ts'

// `kennel audit verify` (R17). The authority is the signed tree heads: the Merkle root recomputed
// from the events as stored must equal every head's root at its size. The audit read model's
// per-event leaves, recorded when each event was first projected, locate the first broken
// position exactly (an edit, a deletion, an insertion or a swap); without them the break is
// located between the last good head and the first bad one.

export type BreakKind = 'edited' | 'reordered' | 'deleted' | 'inserted' | 'truncated' | 'head-mismatch' | 'head-signature'

export interface AuditBreak {
  kind: BreakKind
  /** the first global position where the log no longer matches */
  position: number
  /** leaf index (0-based) of that position in the tree */
  index: number
  message: string
}

export interface VerifyResult {
  ok: boolean
  events: number
  headsChecked: number
  /** size of the largest head that verified */
  signedSize: number
  /** the events compared against the leaves recorded by the audit projection */
  leavesCompared: number
  firstBreak?: AuditBreak
}

export interface VerifyOptions {
  store: EventStore
  /** the audit read model; without it, breaks are located by heads only */
  readModels?: ReadModelStore
  verifiers: readonly AuditVerifier[]
  onProgress?: (events: number) => void
  batchSize?: number
}

export async function verifyAuditLog(o: VerifyOptions): Promise<VerifyResult> {
  const heads = await readHeads(o.store)
  const bad = heads.find((h) => !headSignatureValid(h.head, o.verifiers))
  const result: VerifyResult = { ok: true, events: 0, headsChecked: 0, signedSize: 0, leavesCompared: 0 }
  if (bad) {
    return { ...result, ok: false, firstBreak: { kind: 'head-signature', position: bad.position, index: -1, message: `the tree head at position ${bad.position} (size ${bad.head.size}) has no valid signature by a trusted key` } }
  }
  const bySize = new Map<number, StoredHead[]>()
  for (const h of heads) bySize.set(h.head.size, [...(bySize.get(h.head.size) ?? []), h])
  const range = new CompactRange()
  const leaves = o.readModels ? new EntryCursor(o.readModels) : undefined
  let lastGood = { size: 0, position: 0 }
  let after = 0
  const batch = o.batchSize ?? 5000
  for (;;) {
    const events = await o.store.readAll({ after, maxCount: batch })
    for (const event of events) {
      const leaf = eventLeaf(event)
      const index = range.size
      const stored = leaves ? await leaves.next() : undefined
      if (leaves && stored === undefined) leaves.exhausted = true
      if (stored) {
        const brk = await compareLeaf(o.readModels!, stored, event, leaf, index)
        if (brk) return { ...result, ok: false, events: index, firstBreak: brk }
        result.leavesCompared++
      }
      range.push(leaf)
      for (const h of bySize.get(range.size) ?? []) {
        result.headsChecked++
        if (!range.root().equals(Buffer.from(h.head.root, 'hex'))) {
          const first = lastGood.position + 1
          return {
            ...result,
            ok: false,
            events: range.size,
            firstBreak: {
              kind: 'head-mismatch',
              position: first,
              index: lastGood.size,
              message: `the events up to position ${event.position} do not match the signed head of size ${h.head.size} (head at position ${h.position}); the last matching head has size ${lastGood.size}, so the first alteration is at or after position ${first}`,
            },
          }
        }
      }
      if (bySize.has(range.size)) {
        lastGood = { size: range.size, position: event.position }
        result.signedSize = range.size
      }
    }
    result.events = range.size
    o.onProgress?.(range.size)
    if (events.length < batch) break
    after = events[events.length - 1]!.position
  }
  if (leaves && !leaves.exhausted) {
    const missing = await leaves.next()
    if (missing) {
      return { ...result, ok: false, firstBreak: { kind: 'deleted', position: missing.position, index: missing.ordinal, message: `the event at position ${missing.position} (leaf ${missing.ordinal}) and every later one recorded by the audit log are missing from the store` } }
    }
  }
  const beyond = heads.filter((h) => h.head.size > range.size).sort((a, b) => a.head.size - b.head.size)[0]
  if (beyond) {
    return { ...result, ok: false, firstBreak: { kind: 'truncated', position: after, index: range.size, message: `the store holds ${range.size} events but a signed head covers ${beyond.head.size}: events after position ${after} were deleted` } }
  }
  return result
}

async function compareLeaf(readModels: ReadModelStore, stored: StoredEntry, event: RecordedEvent, leaf: Buffer, index: number): Promise<AuditBreak | undefined> {
  if (stored.position === event.position) {
    if (stored.digest.equals(leaf)) return undefined
    // the event id tells an edit from an event moved here from elsewhere or one never recorded
    const recordedAt = await readModels.positionOf(AUDIT_PROJECTION, event.id)
    if (recordedAt === undefined) return { kind: 'inserted', position: event.position, index, message: `the event at position ${event.position} (leaf ${index}, id ${event.id}) was inserted: the audit log never recorded it` }
    if (recordedAt !== event.position) return { kind: 'reordered', position: event.position, index, message: `the event at position ${event.position} (leaf ${index}) was recorded at position ${recordedAt}: events were reordered or shifted` }
    return { kind: 'edited', position: event.position, index, message: `the event at position ${event.position} (leaf ${index}) was edited: its bytes no longer hash to the recorded leaf` }
  }
  if (stored.position < event.position) {
    return { kind: 'deleted', position: stored.position, index, message: `the event at position ${stored.position} (leaf ${index}) was deleted or moved` }
  }
  return { kind: 'inserted', position: event.position, index, message: `an event was inserted at position ${event.position} (leaf ${index}): the audit log recorded position ${stored.position} there` }
}

/** reads the audit projection's recorded leaves in order, in batches */
class EntryCursor {
  private buffer: StoredEntry[] = []
  private i = 0
  private after = 0
  exhausted = false
  constructor(private readonly readModels: ReadModelStore) {}

  async next(): Promise<StoredEntry | undefined> {
    if (this.exhausted) return undefined
    if (this.i >= this.buffer.length) {
      this.buffer = await this.readModels.entries(AUDIT_PROJECTION, this.after, 5000)
      this.i = 0
      if (this.buffer.length === 0) return undefined
      this.after = this.buffer[this.buffer.length - 1]!.position
    }
    return this.buffer[this.i++]
  }
}
