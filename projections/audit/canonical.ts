import type { RecordedEvent } from '../../infra/eventstore/port.ts'

// The bytes a Merkle leaf hashes (R17): a canonical JSON of the event exactly as the store returns
// it (keys sorted at every level, no whitespace), including its global position and id, so that
// an edit of any field, a move to another position or a swap changes the leaf. Data is hashed as
// stored, so ciphertext stays verifiable after the person's key is erased (R12).

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value)
    // undefined, functions and symbols have no JSON form; an adapter never returns them
    return s === undefined ? 'null' : s
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`
}

export function canonicalEventBytes(e: RecordedEvent): Buffer {
  return Buffer.from(
    canonicalJson({ data: e.data, id: e.id, metadata: e.metadata, position: e.position, revision: e.revision, stream: e.stream, time: e.time, type: e.type }),
    'utf8',
  )
}
