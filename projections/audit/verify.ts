import { isKennelError } from '../../infra/errors.ts'
import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import type { EntryLookups, StoredEntry } from '../readmodels/port.ts'
import { headSignatureValid, readHeads, type StoredHead } from './heads.ts'
import type { AuditVerifier } from './keys.ts'
import { CompactRange, eventLeaf } from './merkle.ts'
import { AUDIT_PROJECTION } from './projection.ts'

// `kennel audit verify` (R17). The authority is the signed tree heads: the Merkle root recomputed
// from the events as stored must equal every head's root at its size. The audit read model's
// per-event leaves, recorded when each event was first projected, locate the first broken
// position exactly (an edit, a deletion, an insertion or a swap); without them the break is
// located between the last good head and the first bad one.

export type BreakKind =
  | 'edited'
  | 'reordered'
  | 'deleted'
  | 'inserted'
  | 'truncated'
  | 'head-mismatch'
  | 'head-signature'
  | 'unsigned'

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
  /** the events compared against the leaves recorded by the audit log */
  leavesCompared: number
  firstBreak?: AuditBreak
}

export interface VerifyOptions {
  store: EventStore
  /** the audit read model; without it, breaks are located by heads only */
  readModels?: EntryLookups
  verifiers: readonly AuditVerifier[]
  /** the signing interval: more events than this after the last signed head are reported as
   * unsigned (heads deleted, or never signed); unset, an unsigned tail of any length passes */
  headEveryEvents?: number
  onProgress?: (events: number) => void
  batchSize?: number
}

export async function verifyAuditLog(o: VerifyOptions): Promise<VerifyResult> {
  const range = new CompactRange()
  const result: VerifyResult = { ok: true, events: 0, headsChecked: 0, signedSize: 0, leavesCompared: 0 }
  const broken = (firstBreak: AuditBreak, events = range.size): VerifyResult => ({
    ...result,
    ok: false,
    events,
    firstBreak,
  })
  let heads: StoredHead[]
  try {
    heads = await readHeads(o.store)
  } catch (err) {
    if (!isKennelError(err, 'KENNEL_ERR_EVENT_CORRUPT')) throw err
    const position = err.details!.position as number
    return broken({
      kind: 'edited',
      position,
      index: -1,
      message: `the tree head at position ${position} was edited: what is stored is not JSON`,
    })
  }
  // a head with a bad signature breaks the log where it stands, so that an earlier edit is
  // named first; only heads that verify are an authority for the roots
  const badAt = new Map<number, StoredHead>()
  const bySize = new Map<number, StoredHead[]>()
  for (const h of heads) {
    if (!headSignatureValid(h.head, o.verifiers)) badAt.set(h.position, h)
    else bySize.set(h.head.size, [...(bySize.get(h.head.size) ?? []), h])
  }
  const leaves = o.readModels ? new EntryCursor(o.readModels) : undefined
  let lastGood = { size: 0, position: 0 }
  let after = 0
  const batch = o.batchSize ?? 5000
  for (;;) {
    const { events, corruptAt } = await readEvents(o.store, after, batch)
    for (const event of events) {
      const index = range.size
      const bad = badAt.get(event.position)
      if (bad) {
        return broken(
          {
            kind: 'head-signature',
            position: bad.position,
            index,
            message: `the tree head at position ${bad.position} (size ${String(bad.head?.size)}) is malformed or has no valid signature by a trusted key`,
          },
          index,
        )
      }
      const leaf = eventLeaf(event)
      const stored = leaves ? await leaves.next() : undefined
      if (leaves && stored === undefined) leaves.exhausted = true
      if (stored) {
        const brk = await compareLeaf(o.readModels!, stored, event, leaf, index)
        if (brk) return broken(brk, index)
        result.leavesCompared++
      }
      range.push(leaf)
      for (const h of bySize.get(range.size) ?? []) {
        result.headsChecked++
        if (!range.root().equals(Buffer.from(h.head.root, 'hex'))) {
          const first = lastGood.position + 1
          return broken({
            kind: 'head-mismatch',
            position: first,
            index: lastGood.size,
            message: `the events up to position ${event.position} do not match the signed head of size ${h.head.size} (head at position ${h.position}); the last matching head has size ${lastGood.size}, so the first alteration is at or after position ${first}`,
          })
        }
      }
      if (bySize.has(range.size)) {
        lastGood = { size: range.size, position: event.position }
        result.signedSize = range.size
      }
    }
    if (corruptAt !== undefined) {
      return broken({
        kind: 'edited',
        position: corruptAt,
        index: range.size,
        message: `the event at position ${corruptAt} (leaf ${range.size}) was edited: what is stored is not JSON`,
      })
    }
    result.events = range.size
    o.onProgress?.(range.size)
    if (events.length < batch) break
    after = events[events.length - 1]!.position
  }
  if (leaves && !leaves.exhausted) {
    const missing = await leaves.next()
    if (missing) {
      return broken({
        kind: 'deleted',
        position: missing.position,
        index: missing.ordinal,
        message: `the event at position ${missing.position} (leaf ${missing.ordinal}) and every later one recorded by the audit log are missing from the store`,
      })
    }
  }
  const beyond = [...bySize.keys()].filter((size) => size > range.size).sort((a, b) => a - b)[0]
  if (beyond !== undefined) {
    const first = lastGood.position + 1
    return broken({
      kind: 'truncated',
      position: first,
      index: lastGood.size,
      message: `the store holds ${range.size} events but a signed head covers ${beyond}: events at or after position ${first} (after the last matching head, of size ${lastGood.size}) were deleted`,
    })
  }
  const unsigned = range.size - result.signedSize
  if (o.headEveryEvents !== undefined && unsigned > o.headEveryEvents) {
    const first = lastGood.position + 1
    return broken({
      kind: 'unsigned',
      position: first,
      index: result.signedSize,
      message: `${unsigned} events from position ${first} on are covered by no signed head, more than the signing interval of ${o.headEveryEvents}: heads were deleted, or the audit log has not run since they were appended (\`kennel start\` or \`kennel projections rebuild audit\` signs them; only do so when you trust the store)`,
    })
  }
  return result
}

/** the next batch of events after `after`; a row that cannot be read ends the batch just before
 * it, so that the events before it are still checked in order */
async function readEvents(
  store: EventStore,
  after: number,
  max: number,
): Promise<{ events: RecordedEvent[]; corruptAt?: number }> {
  try {
    return { events: await store.readAll({ after, maxCount: max }) }
  } catch (err) {
    if (!isKennelError(err, 'KENNEL_ERR_EVENT_CORRUPT')) throw err
    const events: RecordedEvent[] = []
    for (;;) {
      try {
        const [event] = await store.readAll({ after: events.at(-1)?.position ?? after, maxCount: 1 })
        if (!event) return { events }
        events.push(event)
      } catch (e) {
        if (!isKennelError(e, 'KENNEL_ERR_EVENT_CORRUPT')) throw e
        return { events, corruptAt: e.details!.position as number }
      }
    }
  }
}

async function compareLeaf(
  readModels: EntryLookups,
  stored: StoredEntry,
  event: RecordedEvent,
  leaf: Buffer,
  index: number,
): Promise<AuditBreak | undefined> {
  if (stored.position === event.position) {
    if (stored.digest.equals(leaf)) return undefined
    // the event id tells an edit from an event moved here from elsewhere or one never recorded
    const recordedAt = await readModels.positionOf(AUDIT_PROJECTION, event.id)
    if (recordedAt === undefined)
      return {
        kind: 'inserted',
        position: event.position,
        index,
        message: `the event at position ${event.position} (leaf ${index}, id ${event.id}) was inserted: the audit log never recorded it`,
      }
    if (recordedAt !== event.position)
      return {
        kind: 'reordered',
        position: event.position,
        index,
        message: `the event at position ${event.position} (leaf ${index}) was recorded at position ${recordedAt}: events were reordered or shifted`,
      }
    return {
      kind: 'edited',
      position: event.position,
      index,
      message: `the event at position ${event.position} (leaf ${index}) was edited: its bytes no longer hash to the recorded leaf`,
    }
  }
  if (stored.position < event.position) {
    return {
      kind: 'deleted',
      position: stored.position,
      index,
      message: `the event at position ${stored.position} (leaf ${index}) was deleted or moved`,
    }
  }
  return {
    kind: 'inserted',
    position: event.position,
    index,
    message: `an event was inserted at position ${event.position} (leaf ${index}): the audit log recorded position ${stored.position} there`,
  }
}

/** reads the audit projection's recorded leaves in order, in batches */
class EntryCursor {
  private buffer: StoredEntry[] = []
  private i = 0
  private after = 0
  exhausted = false
  constructor(private readonly readModels: EntryLookups) {}

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
