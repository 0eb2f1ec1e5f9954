import { createHash } from 'node:crypto'
import type { EventMetadata, EventStore, RecordedEvent } from '../infra/eventstore/port.ts'
import { type DeviceConnected, type DeviceDisconnected, mqttStream } from './events.ts'

// Connections that were open when a broker's process ended without closing them (kill -9, a
// power loss): their DeviceConnected has no DeviceDisconnected, so the log says the toy is still
// connected, and the ops console showed it connected, for ever. On the embedded store one node
// holds the store (infra/eventstore/node-lock.ts), so when it starts every connection still open
// on record is one of them; each is closed on record with reason `broker-crashed` before the
// broker listens. The event's time is the restart: the connection ended between its last event
// and then. Event ids derive from the connection id, so a start interrupted half-way and run
// again appends none twice (the append is idempotent).
//
// A cluster on PostgreSQL cannot tell a dead broker's connections from a live one's this way;
// there they stay open on record until the toy's next DeviceConnected.

const PAGE = 10_000

/** a UUID (version 4 layout) derived from the connection id */
function eventIdFor(connectionId: string): string {
  const h = createHash('sha256').update(`kennel:broker-crashed:${connectionId}`).digest()
  h[6] = (h[6]! & 0x0f) | 0x40
  h[8] = (h[8]! & 0x3f) | 0x80
  const x = h.subarray(0, 16).toString('hex')
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`
}

/** close on record every connection left open by a broker that died; returns how many */
export async function closeOrphanedConnections(store: EventStore): Promise<number> {
  const open = new Map<string, RecordedEvent>()
  for (let after = 0; ; ) {
    const page = await store.readAll({
      after,
      maxCount: PAGE,
      filter: { types: ['DeviceConnected', 'DeviceDisconnected'] },
    })
    for (const e of page) {
      const id = (e.data as { connectionId?: unknown }).connectionId
      if (typeof id !== 'string') continue
      if (e.type === 'DeviceConnected') open.set(id, e)
      else open.delete(id)
    }
    if (page.length < PAGE) break
    after = page.at(-1)!.position
  }
  for (const [connectionId, connected] of open) {
    const { deviceId, ip } = connected.data as DeviceConnected['data']
    // the address only where the connection recorded it in clear (a paired toy's is sealed in its
    // DeviceConnected's metadata, and is not written again)
    const event: DeviceDisconnected = {
      type: 'DeviceDisconnected',
      data: { deviceId, reason: 'broker-crashed', ...(ip !== undefined ? { ip } : {}), connectionId },
    }
    const metadata: EventMetadata = {
      actor: 'system:broker',
      ...(connected.metadata.credential ? { credential: connected.metadata.credential } : {}),
    }
    await store.append(mqttStream(deviceId), [{ id: eventIdFor(connectionId), ...event, metadata }])
  }
  return open.size
}
