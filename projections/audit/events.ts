// Events of the tamper-evident audit log (R17), appended by projections/ to `audit-heads`.

export const AUDIT_HEADS_STREAM = 'audit-heads'

/** A signed tree head: the Merkle root over the first `size` events in global order (every
 * stream, heads included). A head never covers itself: it is appended after the events it signs
 * and is covered by the next one. */
export interface TreeHead {
  size: number
  /** hex SHA-256 */
  root: string
  /** ISO time: the newest covered event's time (count-triggered heads) or the signing time */
  time: string
  keyId: string
  /** base64 Ed25519 signature over treeHeadMessage(head) */
  signature: string
}

export type AuditEvent = { type: 'TreeHeadSigned'; data: TreeHead }

export const treeHeadMessage = (h: Omit<TreeHead, 'signature'>): Buffer =>
  Buffer.from(`kennel-tree-head/v1\n${h.keyId}\n${h.size}\n${h.root}\n${h.time}`, 'utf8')
