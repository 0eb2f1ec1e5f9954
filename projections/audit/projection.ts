import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { deterministicEventId } from '../event-id.ts'
import { emit } from '../outbox.ts'
import { ALL_EVENTS, type DocumentTx, type Projection, type ProjectionEntry } from '../projection.ts'
import { AUDIT_HEADS_STREAM, treeHeadMessage, type TreeHead } from './events.ts'
import type { AuditSigner } from './keys.ts'
import { LeafPrefetcher } from './leaves.ts'
import { CompactRange, eventLeaf } from './merkle.ts'

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
    const t = new TreeState(doc?.size ?? 0, (doc?.stack ?? []).map((h) => Buffer.from(h, 'hex')))
    t.signedSize = doc?.signedSize ?? 0
    t.contentSize = doc?.contentSize ?? 0
    t.unsignedSince = doc?.unsignedSince
    return t
  }

  toJSON(): TreeDoc {
    return { size: this.size, stack: this.stack.map((b) => b.toString('hex')), signedSize: this.signedSize, contentSize: this.contentSize, unsignedSince: this.unsignedSince }
  }
}

export interface AuditProjectionOptions {
  signer: AuditSigner
  headEveryEvents: number
  headEverySeconds: number
}

/** `prefix:value` strings, kept for values seen before: an event's keys are mostly the same few
 * devices and credentials, and a string looked up once carries its hash, so the key index does
 * not build and hash a new key string per event. Cleared when large (recording ids rarely repeat). */
class KeyNames {
  private readonly names = new Map<string, string>()
  constructor(private readonly prefix: string) {}

  of(value: string): string {
    let name = this.names.get(value)
    if (name === undefined) {
      if (this.names.size >= 65_536) this.names.clear()
      this.names.set(value, (name = `${this.prefix}:${value}`))
    }
    return name
  }
}

const ACTOR = new KeyNames('actor')
const CREDENTIAL = new KeyNames('credential')
const FIELDS: ReadonlyArray<[string, KeyNames]> = [
  ['deviceId', new KeyNames('device')],
  ['householdId', new KeyNames('household')],
  ['accountId', new KeyNames('account')],
  ['ownerAccountId', new KeyNames('account')],
  ['recordingId', new KeyNames('recording')],
  ['serial', new KeyNames('serial')],
]

/** Lookup keys of an event, from the metadata and data conventions of docs/EVENTS.md (its id is
 * indexed by the read-model store itself: ReadModelStore.positionOf). */
export function auditKeys(e: RecordedEvent): string[] {
  const keys: string[] = []
  const m = e.metadata
  if (typeof m.actor === 'string') keys.push(ACTOR.of(m.actor))
  if (typeof m.credential === 'string') keys.push(CREDENTIAL.of(m.credential))
  const d = e.data
  if (d !== null && typeof d === 'object') {
    const data = d as Record<string, unknown>
    for (const [field, names] of FIELDS) {
      const v = data[field]
      if (typeof v === 'string' && v !== '') keys.push(names.of(v))
    }
  }
  return keys
}

function pushOwnLeaf(tree: CompactRange, event: RecordedEvent): Buffer {
  const leaf = eventLeaf(event)
  tree.push(leaf)
  return leaf
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
  // leaves precomputed on another thread during a catch-up (leaves.ts); one catch-up at a time
  let leaves: LeafPrefetcher | undefined
  return {
    name: AUDIT_PROJECTION,
    version: 1,
    eventTypes: ALL_EVENTS,
    apply(tx, event): ProjectionEntry {
      const tree = load(tx)
      const leaf = leaves?.pushLeaf(tree, event.position) ?? pushOwnLeaf(tree, event)
      if (event.type === 'TreeHeadSigned' && event.stream === AUDIT_HEADS_STREAM) {
        const size = Number((event.data as TreeHead).size)
        if (size > tree.signedSize) tree.signedSize = size
        if (tree.signedSize >= tree.contentSize) tree.unsignedSince = undefined
      } else {
        tree.contentSize = tree.size
        tree.unsignedSince ??= event.time
      }
      tx.put(TREE, 'tree', tree)
      if (tree.size % o.headEveryEvents === 0) emitHead(tx, tree, event.time)
      return { ordinal: tree.size - 1, keys: auditKeys(event), digest: leaf }
    },
    catchUp(store, after, head) {
      if (leaves) return undefined
      const prefetcher = LeafPrefetcher.start(store, after, head)
      if (!prefetcher) return undefined
      leaves = prefetcher
      return {
        before: (position) => prefetcher.before(position),
        stop: async () => {
          if (leaves === prefetcher) leaves = undefined
          await prefetcher.stop()
        },
      }
    },
    tick(tx, now) {
      const tree = load(tx)
      if (tree.unsignedSince === undefined || tree.contentSize <= tree.signedSize) return
      if (now.getTime() - Date.parse(tree.unsignedSince) < o.headEverySeconds * 1000) return
      emitHead(tx, tree, now.toISOString())
    },
  }
}
