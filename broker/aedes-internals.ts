import type { AedesPublishPacket, Aedes, Client, PublishPacket } from 'aedes'
import mqttPacket from 'mqtt-packet'

// Everything kennel reads or changes inside Aedes 1.2 that its types do not expose, in one place,
// so that an upgrade has one file to check. Each function names the internal it relies on.

/** `aedes.clients`: the clients registered on this process, by client id */
export function registeredClients(aedes: Aedes): Record<string, Client> {
  return (aedes as unknown as { clients: Record<string, Client> }).clients
}

/** `client.will`: authorizePublish runs for a client's own last will when it closes */
export function isOwnWill(client: Client, packet: PublishPacket): boolean {
  return (client as unknown as { will?: unknown }).will === packet
}

/** `packet.clientId`: the client id Aedes stores with a will; a stale will (of a node that died)
 * reaches authorizePublish with no client, its owner named only there */
export function willOwner(packet: PublishPacket): string {
  return String((packet as { clientId?: string }).clientId ?? '')
}

/** `client.connackSent`: false while the CONNECT is handled, when Aedes re-runs authorizeSubscribe
 * for the subscriptions of a persistent session it restores; packets that arrive meanwhile wait
 * for the CONNACK (`enqueue` in Aedes' client.js), so a SUBSCRIBE is never handled before it */
export function restoringSession(client: Client): boolean {
  return (client as unknown as { connackSent?: boolean }).connackSent !== true
}

/** `persistence.incomingGetPacket`: a QoS 2 PUBLISH of this client with this packet identifier
 * is stored until its PUBREL (in Redis in a cluster, so also across a reconnect); Aedes' publish
 * handler answers a re-send of it with PUBREC only. The lookup rejects when there is none. */
export function awaitingRelease(aedes: Aedes, client: Client, packet: PublishPacket): Promise<boolean> {
  const persistence = (
    aedes as unknown as {
      persistence: { incomingGetPacket(client: Client, packet: { messageId?: number }): Promise<unknown> }
    }
  ).persistence
  return persistence.incomingGetPacket(client, { messageId: packet.messageId }).then(
    () => true,
    () => false,
  )
}

/** `client._disconnected`: the client ended with a DISCONNECT packet [MQTT-3.14.4-3] */
export function sentDisconnect(client: Client): boolean {
  return (client as unknown as { _disconnected?: boolean })._disconnected === true
}

export interface SharedEmitter {
  on(topic: string, fn: (packet: AedesPublishPacket, cb: () => void) => void, done?: () => void): void
}

/** `aedes.mq`: the emitter every broker of a cluster shares (mqemitter-redis) */
export function sharedEmitter(aedes: Aedes): SharedEmitter {
  return (aedes as unknown as { mq: SharedEmitter }).mq
}

/** Call `onOversize` and destroy the connection as soon as a packet header declares more than
 * `max` bytes, instead of buffering it whole: mqtt-packet's parser (`client._parser`) has no
 * limit of its own for MQTT 3.1.1. */
export function limitPacketSize(client: Client, max: number, onOversize: () => void): void {
  const parser = (client as unknown as { _parser: { parse(buf: Buffer): number; packet: { length: number } } })._parser
  const parse = parser.parse.bind(parser)
  parser.parse = (buf: Buffer) => {
    const left = parse(buf)
    if (parser.packet.length > max) {
      onOversize()
      client.conn.destroy()
      return 0
    }
    return left
  }
}

/** Call `fn` when Aedes closes the client while its connection is still open. Every end that
 * comes from the peer or the protocol (FIN, socket error, parse error, keep-alive timeout,
 * DISCONNECT, a packet limit) ends or destroys the connection before `client.close` runs, or
 * calls the close bound at construction. Aedes 1.2 calls `client.close()` on a live connection
 * only to take its client id over for a newer connection [MQTT-3.1.4-2] (`registerClient` on
 * this node, `$SYS/+/new/clients` from another node of a cluster), when the broker closes, and
 * after a refused CONNACK (no session: nothing to name); kennel's own kicks name their reason
 * before they close. */
export function onClosedByBroker(client: Client, fn: () => void): void {
  const close = client.close.bind(client)
  client.close = (done?: () => void) => {
    const conn = client.conn as Client['conn'] & { destroyed?: boolean; readableEnded?: boolean }
    if (!client.closed && !conn.destroyed && !conn.readableEnded) fn()
    close(done)
  }
}

interface StoredOutgoing {
  cmd?: string
  messageId?: number
  dup?: boolean
}

interface OutgoingPersistence {
  outgoingStream(client: Client): AsyncIterable<StoredOutgoing>
}

/** Send stored QoS 1/2 messages again with DUP=1 when a persistent session resumes
 * [MQTT-3.3.1-1]: Aedes resends them as they were stored, DUP=0 (moscajs/aedes#601).
 * `persistence.outgoingStream` is what the CONNECT handler replays; a stored PUBLISH carries a
 * packet identifier only once it was handed to the client (`outgoingUpdate` before the write),
 * so one without an identifier was queued while the client was offline and is a first delivery
 * (DUP=0). PUBREL has no DUP flag. */
export function markRedeliveries(aedes: Aedes): void {
  const persistence = (aedes as unknown as { persistence: OutgoingPersistence }).persistence
  const stored = persistence.outgoingStream.bind(persistence)
  persistence.outgoingStream = (client) => redeliveries(stored(client))
}

async function* redeliveries(stored: AsyncIterable<StoredOutgoing>): AsyncGenerator<StoredOutgoing> {
  for await (const packet of stored) {
    const sentBefore =
      (packet.cmd ?? 'publish') === 'publish' && typeof packet.messageId === 'number' && packet.messageId > 0
    // a copy: the in-memory persistence yields the very packets it stores
    yield sentBefore ? { ...packet, dup: true } : packet
  }
}

/** Aedes writes every packet with mqtt-packet's `writeToStream`, which by default builds, on its
 * first packet, a cache of 65,536 two-byte Buffers for packet identifiers and lengths: about 7 MB
 * of heap held for the life of the process (measured in a heap snapshot of `kennel start`).
 * Uncached, each such number is a two-byte Buffer from Node's pool when written. The setting is
 * the module's, for the whole process. */
export function writeNumbersUncached(): void {
  mqttPacket.writeToStream.cacheNumbers = false
}
