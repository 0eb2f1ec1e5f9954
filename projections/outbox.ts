import type { NewEvent } from '../infra/eventstore/port.ts'
import type { DocumentTx } from './projection.ts'

// Projections that raise events (alerts, signed tree heads) stay synchronous and deterministic:
// `apply` writes the event into the outbox collection, the persistent runner stores it together
// with the checkpoint and appends it after the commit. The event's id is deterministic, so an
// append repeated after a crash or by a rebuild is absorbed by the store's idempotent append.

export const OUTBOX = '$outbox'

export interface OutboxEntry {
  stream: string
  event: NewEvent & { id: string }
}

export function emit(tx: DocumentTx, stream: string, event: NewEvent & { id: string }): void {
  tx.put(OUTBOX, event.id, { stream, event } satisfies OutboxEntry)
}
