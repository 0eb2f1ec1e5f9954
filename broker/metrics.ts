import { Counter, Gauge, type Registry } from 'prom-client'

// R11: Prometheus metrics of the broker. The API's /metrics serves the registry it is given.

export interface BrokerMetrics {
  registry: Registry
  messages: Counter<'direction'>
  denials: Counter<'kind'>
  authFailures: Counter<'reason'>
  denylistHits: Counter
  unauthenticatedRefused: Counter
  connectTimeouts: Counter<'phase'>
  rateLimited: Counter<'limit'>
  kicks: Counter<'reason'>
  appendFailures: Counter
}

export function createBrokerMetrics(
  registry: Registry,
  connectedClients: () => number,
  unauthenticated: () => number,
): BrokerMetrics {
  const registers = [registry]
  new Gauge({
    name: 'kennel_mqtt_clients_connected',
    help: 'MQTT clients connected to this broker process',
    registers,
    collect() {
      this.set(connectedClients())
    },
  })
  new Gauge({
    name: 'kennel_mqtt_unauthenticated_connections',
    help: 'TCP connections to the broker not yet answered with CONNACK 0 (R9)',
    registers,
    collect() {
      this.set(unauthenticated())
    },
  })
  return {
    registry,
    messages: new Counter({
      name: 'kennel_mqtt_messages_total',
      help: 'MQTT publishes accepted, by direction (in = from toys, inbox = from the backend)',
      labelNames: ['direction'],
      registers,
    }),
    denials: new Counter({
      name: 'kennel_mqtt_denials_total',
      help: 'MQTT actions refused by topic policy, by kind (publish, subscribe, will, forward)',
      labelNames: ['kind'],
      registers,
    }),
    authFailures: new Counter({
      name: 'kennel_mqtt_auth_failures_total',
      help: 'MQTT connections refused during authentication, by reason',
      labelNames: ['reason'],
      registers,
    }),
    denylistHits: new Counter({
      name: 'kennel_mqtt_denylist_hits_total',
      help: 'TCP connections refused by the denylist before TLS (R9)',
      registers,
    }),
    unauthenticatedRefused: new Counter({
      name: 'kennel_mqtt_unauthenticated_refused_total',
      help: 'TCP connections refused on accept because their source held KENNEL_UNAUTHENTICATED_PER_IP unauthenticated connections (R9)',
      registers,
    }),
    connectTimeouts: new Counter({
      name: 'kennel_mqtt_connect_timeouts_total',
      help: 'connections closed for not finishing the TLS handshake (phase handshake) or not being accepted with CONNACK 0 (phase connect) in time (R9)',
      labelNames: ['phase'],
      registers,
    }),
    rateLimited: new Counter({
      name: 'kennel_mqtt_rate_limited_total',
      help: 'MQTT actions refused by a rate limit (R6)',
      labelNames: ['limit'],
      registers,
    }),
    kicks: new Counter({
      name: 'kennel_mqtt_kicks_total',
      help: 'live sessions closed by the broker, by reason',
      labelNames: ['reason'],
      registers,
    }),
    appendFailures: new Counter({
      name: 'kennel_mqtt_event_append_failures_total',
      help: 'broker events whose append failed after its retries (logged; the action they record happened)',
      registers,
    }),
  }
}
