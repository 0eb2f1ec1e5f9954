import type { EventStore } from '../../infra/eventstore/port.ts'
import { AUDIT_HEADS_STREAM, treeHeadMessage, type TreeHead } from './events.ts'
import type { AuditVerifier } from './keys.ts'

export interface StoredHead {
  head: TreeHead
  /** where the TreeHeadSigned event is in the log */
  position: number
}

/** every head in the log, in the order appended */
export async function readHeads(store: EventStore): Promise<StoredHead[]> {
  const events = await store.readStream(AUDIT_HEADS_STREAM)
  return events
    .filter((e) => e.type === 'TreeHeadSigned')
    .map((e) => ({ head: e.data as TreeHead, position: e.position }))
}

/** a stored or exported head has exactly the fields it was signed with, of their types */
export function isTreeHead(h: unknown): h is TreeHead {
  if (typeof h !== 'object' || h === null || Array.isArray(h)) return false
  const o = h as Record<string, unknown>
  return (
    Object.keys(o).length === 5 &&
    Number.isSafeInteger(o.size) &&
    (o.size as number) >= 0 &&
    typeof o.root === 'string' &&
    /^[0-9a-f]{64}$/.test(o.root) &&
    typeof o.time === 'string' &&
    typeof o.keyId === 'string' &&
    typeof o.signature === 'string'
  )
}

/** the head's fields are well formed and signed by one of the verifiers (a head read from the
 * store or a file is typed TreeHead but checked as if it were anything) */
export function headSignatureValid(head: TreeHead, verifiers: readonly AuditVerifier[]): boolean {
  if (!isTreeHead(head)) return false
  const v = verifiers.find((x) => x.keyId === head.keyId)
  if (!v) return false
  const { signature, ...unsigned } = head
  // Node's base64 decoder skips what it does not understand: only the canonical text of a
  // 64-byte Ed25519 signature is the signature
  const bytes = Buffer.from(signature, 'base64')
  if (bytes.length !== 64 || bytes.toString('base64') !== signature) return false
  return v.verify(treeHeadMessage(unsigned), bytes)
}

/** the signed head with the largest size (the latest checkpoint), among valid ones */
export function latestHead(heads: readonly StoredHead[], verifiers: readonly AuditVerifier[]): StoredHead | undefined {
  let best: StoredHead | undefined
  for (const h of heads) if (headSignatureValid(h.head, verifiers) && (!best || h.head.size > best.head.size)) best = h
  return best
}
