import { CanonicalTextEvent, canonicalJsonFast } from '../../infra/eventstore/canonical-json.ts'
import type { RecordedEvent } from '../../infra/eventstore/port.ts'

// The bytes a Merkle leaf hashes (R17): a canonical JSON of the event exactly as the store returns
// it (keys sorted at every level, no whitespace), including its global position and id, so that
// an edit of any field, a move to another position or a swap changes the leaf. Data is hashed as
// stored, so ciphertext stays verifiable after the person's key is erased (R12).

export function canonicalEventText(e: RecordedEvent): string {
  // the embedded store hands over its events with the canonical texts it stored
  const texts = CanonicalTextEvent.textsOf(e)
  if (texts) return canonicalStoredEventText(e.position, e.id, e.stream, e.revision, e.type, e.time, texts[0], texts[1])
  return canonicalJsonFast({
    data: e.data,
    id: e.id,
    metadata: e.metadata,
    position: e.position,
    revision: e.revision,
    stream: e.stream,
    time: e.time,
    type: e.type,
  })
}

/** canonicalEventText of a stored event whose data and metadata texts are canonical JSON (the
 * embedded store writes them so: storedJson), assembled from those texts without parsing them */
export function canonicalStoredEventText(
  position: number,
  id: string,
  stream: string,
  revision: number,
  type: string,
  time: string,
  data: string,
  metadata: string,
): string {
  return `{"data":${data},"id":${quote(id)},"metadata":${metadata},"position":${position},"revision":${revision},"stream":${quote(stream)},"time":${quote(time)},"type":${quote(type)}}`
}

/** JSON.stringify(s), without its cost for the usual string that needs no escape */
const PLAIN = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/
const quote = (s: string): string => (PLAIN.test(s) ? `"${s}"` : JSON.stringify(s))
