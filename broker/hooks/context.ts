import type { TLSSocket } from 'node:tls'
import type { Aedes, Client } from 'aedes'
import type { PeerIdentity } from '../authenticate.ts'
import type { BrokerConfig, ToySource } from '../broker.ts'
import type { DisconnectReason } from '../events.ts'
import type { BrokerMetrics } from '../metrics.ts'
import type { BrokerRateLimits } from '../ratelimit.ts'
import type { RevocationFollower } from '../revocation.ts'
import type { Sessions } from '../sessions.ts'
import type { UnacknowledgedPublishes } from '../unacknowledged.ts'
import type { DeviceRecords } from './records.ts'

// What the Aedes hooks (connect.ts, publish.ts, subscribe.ts, forward.ts) share, built once by
// createBroker (broker.ts). Each hook file exports a function of this context that returns the
// handler Aedes calls; the context is read when the handler is made, never per packet.

/** a connection whose CONNECT is not decided yet: packets sent right behind it wait for it */
export interface Undecided {
  decided: Promise<void>
  decide(): void
}

export interface HookContext {
  readonly aedes: Aedes
  readonly config: BrokerConfig
  /** what an accepted connection's events record of the toy's address (BrokerOptions.toySource) */
  readonly toySource: ToySource | undefined
  /** the verified certificate of each TLS connection, from its handshake (broker.ts onSecureConnection) */
  readonly identities: WeakMap<TLSSocket, PeerIdentity>
  readonly sessions: Sessions
  readonly unacknowledged: UnacknowledgedPublishes
  readonly rateLimits: BrokerRateLimits
  readonly metrics: BrokerMetrics
  readonly revocations: Pick<RevocationFollower, 'revoked'>
  readonly records: DeviceRecords
  /** A toy may send packets right behind its CONNECT, without waiting for the CONNACK
   * [MQTT-3.1.4]: Aedes can hand such a PUBLISH or SUBSCRIBE to the hooks before the CONNECT is
   * decided (one larger than a TLS record, read after the CONNECT's); it waits for the CONNACK,
   * then is decided as any other. Refused at once, it closed the connection before the CONNACK
   * was sent. Set when the connection is handed to Aedes, cleared by its CONNACK or its close. */
  readonly undecided: WeakMap<Client, Undecided>
  /** authentications in progress: a DeviceConnected may still be recorded for each */
  readonly authenticating: Set<Promise<void>>
  /** note why the connection ends and destroy its socket */
  endConnection(client: Client, reason: DisconnectReason): void
  /** true once the broker's close() began */
  closing: boolean
}
