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
  if (Array.isArray(value)) {
    let out = '['
    for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + canonicalJson(value[i])
    return `${out}]`
  }
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj).sort()
  let out = '{'
  let first = true
  for (const k of keys) {
    const v = obj[k]
    if (v === undefined) continue
    out += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`
    first = false
  }
  return `${out}}`
}

export function canonicalEventBytes(e: RecordedEvent): Buffer {
  return Buffer.from(
    canonicalJson({ data: e.data, id: e.id, metadata: e.metadata, position: e.position, revision: e.revision, stream: e.stream, time: e.time, type: e.type }),
    'utf8',
  )
}
