import type { TLSSocket } from 'node:tls'
import type { Client } from 'aedes'
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

export interface HookContext {
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
  /** authentications in progress: a DeviceConnected may still be recorded for each */
  readonly authenticating: Set<Promise<void>>
  /** note why the connection ends and destroy its socket */
  endConnection(client: Client, reason: DisconnectReason): void
  /** true once the broker's close() began */
  closing: boolean
}
