import { createHash } from 'node:crypto'

// Name-based UUIDs (RFC 9562 §5.5, version 5, SHA-1) for events a projection derives from other
// events: the same name always gives the same id, so a rebuild or a second process appending the
// same alert or tree head is absorbed by the store's idempotent append instead of duplicating it.

const NAMESPACE = Buffer.from('6f1c8a52d0b44c5a9e1b7d3f2a6c4e80', 'hex')

export function deterministicEventId(name: string): string {
  const h = createHash('sha1').update(NAMESPACE).update(name, 'utf8').digest()
  h[6] = (h[6]! & 0x0f) | 0x50
  h[8] = (h[8]! & 0x3f) | 0x80
  const hex = h.subarray(0, 16).toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`
}
