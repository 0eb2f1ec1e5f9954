import type { Config } from '../infra/config.ts'
import type { EventMetadata } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { UnauthenticatedConnections } from '../infra/net/unauthenticated.ts'
import { securityStream } from '../infra/net/events.ts'
import type { BrokerEvent } from './events.ts'
import type { BrokerMetrics } from './metrics.ts'

// What a connection may hold before CONNACK 0 (R9): the deadlines and the per-source cap of
// infra/net/unauthenticated.ts, with the broker's metrics and ConnectionCapExceeded events.

export type AdmissionConfig = Pick<
  Config,
  'tlsHandshakeTimeoutSeconds' | 'connectTimeoutSeconds' | 'unauthenticatedPerIp'
>

export function createAdmission(deps: {
  config: AdmissionConfig
  metrics: BrokerMetrics
  record(stream: string, event: BrokerEvent, metadata: EventMetadata): Promise<void>
  now(): Date
  log: Logger
}): UnauthenticatedConnections {
  const { config, metrics } = deps
  return new UnauthenticatedConnections(
    {
      handshakeTimeoutMs: config.tlsHandshakeTimeoutSeconds * 1000,
      connectTimeoutMs: config.connectTimeoutSeconds * 1000,
      maxPerSource: config.unauthenticatedPerIp,
    },
    {
      onRefused: () => metrics.unauthenticatedRefused.inc(),
      record: ({ ip, source, cap }, refusals) =>
        deps
          .record(
            securityStream(deps.now()),
            { type: 'ConnectionCapExceeded', data: { listener: 'mqtt', ip, source, cap, refusals } },
            { actor: 'anonymous', sourceIp: ip },
          )
          .catch(() => undefined),
      onTimeout(phase, ip) {
        metrics.connectTimeouts.inc({ phase })
        deps.log.debug({ phase, ip }, 'connection closed: not authenticated in time')
      },
    },
  )
}
