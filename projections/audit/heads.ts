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
  return events.filter((e) => e.type === 'TreeHeadSigned').map((e) => ({ head: e.data as TreeHead, position: e.position }))
}

export function headSignatureValid(head: TreeHead, verifiers: readonly AuditVerifier[]): boolean {
  const v = verifiers.find((x) => x.keyId === head.keyId)
  if (!v || typeof head.signature !== 'string') return false
  const { signature, ...unsigned } = head
  return v.verify(treeHeadMessage(unsigned), Buffer.from(signature, 'base64'))
}

/** the signed head with the largest size (the latest checkpoint), among valid ones */
export function latestHead(heads: readonly StoredHead[], verifiers: readonly AuditVerifier[]): StoredHead | undefined {
  let best: StoredHead | undefined
  for (const h of heads) if (headSignatureValid(h.head, verifiers) && (!best || h.head.size > best.head.size)) best = h
  return best
}
