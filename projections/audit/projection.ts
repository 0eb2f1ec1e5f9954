import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import { deterministicEventId } from '../event-id.ts'
import { emit } from '../outbox.ts'
import { ALL_EVENTS, type DocumentTx, type Projection, type ProjectionEntry } from '../projection.ts'
import { AUDIT_HEADS_STREAM, treeHeadMessage, type TreeHead } from './events.ts'
import type { AuditSigner } from './keys.ts'
import { auditKeys, headSizeOf } from './lookup-keys.ts'
import { CompactRange, eventLeaf } from './merkle.ts'
import { AuditCatchUpThreads } from './catch-up-threads.ts'

// The audit log read model (R16, R17): every event in global order as an entry (its Merkle leaf
// and lookup keys), the right edge of the Merkle tree, and signed tree heads raised every
// `headEveryEvents` events (at sizes that are multiples of it, so a rebuild raises the same heads
// with the same ids) and, by `tick`, `headEverySeconds` after the first unsigned event.

export const AUDIT_PROJECTION = 'audit'
const TREE = 'audit-tree'

interface TreeDoc {
  size: number
  /** hex hashes of the tree's right edge (CompactRange.stack) */
  stack: string[]
  /** size covered by the newest head seen in the log */
  signedSize: number
  /** size after the newest event that is not a tree head: heads alone never call for a head */
  contentSize: number
  /** time of the first event not covered by a head (absent: all covered) */
  unsignedSince?: string
}

/** The tree document as held in memory: hashes as Buffers (no hex round trip per event),
 * serialised to the plain TreeDoc when the runner stores it. */
class TreeState extends CompactRange {
  signedSize = 0
  contentSize = 0
  unsignedSince: string | undefined

  static from(doc: TreeDoc | TreeState | undefined): TreeState {
    if (doc instanceof TreeState) return doc
    const t = new TreeState(
      doc?.size ?? 0,
      (doc?.stack ?? []).map((h) => Buffer.from(h, 'hex')),
    )
    t.signedSize = doc?.signedSize ?? 0
    t.contentSize = doc?.contentSize ?? 0
    t.unsignedSince = doc?.unsignedSince
    return t
  }

  toJSON(): TreeDoc {
    return {
      size: this.size,
      stack: this.stack.map((b) => b.toString('hex')),
      signedSize: this.signedSize,
      contentSize: this.contentSize,
      unsignedSince: this.unsignedSince,
    }
  }
}

export interface AuditProjectionOptions {
  signer: AuditSigner
  headEveryEvents: number
  headEverySeconds: number
}

export function signHead(signer: AuditSigner, size: number, root: Buffer, time: string): TreeHead {
  const unsigned = { size, root: root.toString('hex'), time, keyId: signer.keyId }
  return { ...unsigned, signature: signer.sign(treeHeadMessage(unsigned)).toString('base64') }
}

export function createAuditProjection(o: AuditProjectionOptions): Projection {
  const load = (tx: DocumentTx): TreeState => TreeState.from(tx.get<TreeDoc | TreeState>(TREE, 'tree'))
  const emitHead = (tx: DocumentTx, range: CompactRange, time: string): void => {
    const head = signHead(o.signer, range.size, range.root(), time)
    emit(tx, AUDIT_HEADS_STREAM, {
      id: deterministicEventId(`tree-head:${head.keyId}:${head.size}`),
      type: 'TreeHeadSigned',
      data: head,
      metadata: { actor: 'system:audit' },
    })
  }
  /** after the event's leaf joined the tree: what heads are due (`headSize`: the size a signed
   * head names, when the event is one) */
  const observe = (tx: DocumentTx, tree: TreeState, time: string, headSize: number | undefined): void => {
    if (headSize !== undefined) {
      if (headSize > tree.signedSize) tree.signedSize = headSize
      if (tree.signedSize >= tree.contentSize) tree.unsignedSince = undefined
    } else {
      tree.contentSize = tree.size
      tree.unsignedSince ??= time
    }
    if (tree.size % o.headEveryEvents === 0) emitHead(tx, tree, time)
  }
  const projection: Projection = {
    name: AUDIT_PROJECTION,
    // 2: per-message metadata under telemetry/ keys (lookup-keys.ts)
    version: 2,
    eventTypes: ALL_EVENTS,
    apply(tx, event): ProjectionEntry {
      const tree = load(tx)
      const leaf = eventLeaf(event)
      tree.push(leaf)
      observe(tx, tree, event.time, headSizeOf(event))
      tx.put(TREE, 'tree', tree)
      return { ordinal: tree.size - 1, keys: auditKeys(event), digest: leaf }
    },
    catchUp(store, after, head) {
      const threads = AuditCatchUpThreads.start(store, after, head)
      if (!threads) return undefined
      let done = after
      return {
        async applyThrough(tx, position, entries, columns) {
          const tree = load(tx)
          // the same instance for apply, should the threads stop
          tx.put(TREE, 'tree', tree)
          while (done < position) {
            const chunk = await threads.chunkAt(done + 1)
            const upTo = Math.min(position, chunk?.upTo ?? position)
            if (chunk === undefined) {
              // the threads stopped: the events themselves, hashed here
              for (const event of await readRange(store, done, upTo))
                entries.push({
                  position: event.position,
                  eventId: event.id,
                  time: event.time,
                  entry: projection.apply(tx, event)!,
                })
            } else {
              const start = firstAfter(chunk.positions, done)
              let end = start
              const firstOrdinal = tree.size
              for (; end < chunk.positions.length && chunk.positions[end]! <= upTo; end++) {
                const p = chunk.positions[end]!
                // the chunk's node hashes hold when every earlier position holds an event
                if (end < chunk.dense && tree.size === p - 1)
                  tree.pushMerged(chunk.merged.subarray(end * 32, end * 32 + 32), trailingOnes(end))
                else tree.push(chunk.leaves.subarray(end * 32, end * 32 + 32))
                observe(tx, tree, chunk.times[end]!, chunk.heads.get(end))
              }
              const last = columns.at(-1)
              // a step that goes on where the last one stopped in the same chunk extends it
              if (
                end > start &&
                last?.positions === chunk.positions &&
                last.start + last.length === start &&
                last.firstOrdinal + last.length === firstOrdinal
              )
                last.length += end - start
              else if (end > start)
                columns.push({
                  start,
                  length: end - start,
                  positions: chunk.positions,
                  eventIds: chunk.eventIds,
                  times: chunk.times,
                  digests: chunk.leaves,
                  firstOrdinal,
                  keyNames: chunk.keyNames,
                  keys: chunk.keys,
                  keyStarts: chunk.keyStarts,
                })
            }
            done = upTo
          }
        },
        stop: () => threads.stop(),
      }
    },
    tick(tx, now) {
      const tree = load(tx)
      if (tree.unsignedSince === undefined || tree.contentSize <= tree.signedSize) return
      if (now.getTime() - Date.parse(tree.unsignedSince) < o.headEverySeconds * 1000) return
      emitHead(tx, tree, now.toISOString())
    },
  }
  return projection
}

/** the events after `after` up to and including `upTo` */
async function readRange(store: EventStore, after: number, upTo: number): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = []
  for (let from = after; from < upTo; ) {
    const events = await store.readAll({ after: from, maxCount: Math.min(1000, upTo - from) })
    for (const e of events) if (e.position <= upTo) out.push(e)
    if (events.length === 0 || events.at(-1)!.position >= upTo) break
    from = events.at(-1)!.position
  }
  return out
}

/** index of the first position greater than `after` */
function firstAfter(positions: Float64Array, after: number): number {
  let lo = 0
  let hi = positions.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (positions[mid]! <= after) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** the subtrees a push at chunk index i completes within the chunk: the trailing one bits of i */
function trailingOnes(i: number): number {
  let n = 0
  while (i & 1) n++, (i >>= 1)
  return n
}
