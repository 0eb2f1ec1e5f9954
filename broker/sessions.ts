import type { Client } from 'aedes'
import type { EventMetadata } from '../infra/eventstore/port.ts'
import type { PeerIdentity } from './authenticate.ts'
import type { DisconnectReason } from './events.ts'
import { sentDisconnect } from './aedes-internals.ts'

// The connections the broker recorded as DeviceConnected, each until its socket closes (R19).
// The end is read from the socket, not from Aedes' `clientDisconnect`: Aedes emits that only for
// clients it registered, after CONNACK's preparation, so a toy that closed or sent garbage while
// its DeviceConnected was being appended would have no end on record. Every opened connection
// ends exactly once, with the first reason noted for it (before or after it opened), else
// `client-disconnect` when it sent DISCONNECT and `connection-lost` when it did not.

export interface Session {
  identity: PeerIdentity
  /** ties the DeviceConnected and DeviceDisconnected of one connection together */
  connectionId: string
  reason?: DisconnectReason
  /** set when revoked: the will is not published */
  suppressWill?: boolean
  /** the device's event stream and the metadata of its own events, made once for its publishes */
  recordedAs?: { stream: string; metadata: EventMetadata }
}

export interface Sessions {
  get(client: Client): Session | undefined
  /** why the connection ends, unless a reason was noted first (also before the session opens) */
  note(client: Client, reason: DisconnectReason): void
  /** the connection's DeviceConnected is on record; `onEnd` runs once, when its socket closes */
  open(
    client: Client,
    identity: PeerIdentity,
    connectionId: string,
    onEnd: (session: Session, reason: DisconnectReason) => void,
  ): Session
  /** the device's opened connections whose sockets are still open */
  ofDevice(deviceId: string): Client[]
  /** every opened connection whose socket is still open, with a promise of its end */
  live(): Array<{ client: Client; ended: Promise<void> }>
}

export function createSessions(): Sessions {
  const sessions = new WeakMap<Client, Session>()
  // reasons noted before the session opened (a parse error right after CONNECT)
  const early = new WeakMap<Client, DisconnectReason>()
  const live = new Map<string, Map<Client, Promise<void>>>()

  return {
    get: (client) => sessions.get(client),
    note(client, reason) {
      const session = sessions.get(client)
      if (session) session.reason ??= reason
      else if (!early.has(client)) early.set(client, reason)
    },
    open(client, identity, connectionId, onEnd) {
      const session: Session = { identity, connectionId, ...(early.has(client) ? { reason: early.get(client)! } : {}) }
      sessions.set(client, session)
      let byClient = live.get(identity.deviceId)
      if (!byClient) live.set(identity.deviceId, (byClient = new Map()))
      const conn = client.conn as Client['conn'] & { closed?: boolean }
      const ended = new Promise<void>((resolve) => {
        const end = (): void => {
          byClient.delete(client)
          if (byClient.size === 0 && live.get(identity.deviceId) === byClient) live.delete(identity.deviceId)
          onEnd(session, session.reason ?? (sentDisconnect(client) ? 'client-disconnect' : 'connection-lost'))
          resolve()
        }
        // closed while its DeviceConnected was being appended: it ends now
        if (conn.closed) end()
        else conn.once('close', end)
      })
      if (!conn.closed) byClient.set(client, ended)
      return session
    },
    ofDevice: (deviceId) => [...(live.get(deviceId)?.keys() ?? [])],
    live: () => [...live.values()].flatMap((m) => [...m].map(([client, ended]) => ({ client, ended }))),
  }
}
