import { Counter, Gauge, Registry } from 'prom-client'

// R11: Prometheus metrics of the broker. The API's /metrics serves the registry it is given.

export interface BrokerMetrics {
  registry: Registry
  messages: Counter<'direction'>
  denials: Counter<'kind'>
  authFailures: Counter<'reason'>
  denylistHits: Counter
  rateLimited: Counter<'limit'>
  kicks: Counter<'reason'>
  appendFailures: Gauge
}

export function createBrokerMetrics(registry: Registry, connectedClients: () => number, appendFailures: () => number): BrokerMetrics {
  const registers = [registry]
  new Gauge({
    name: 'kennel_mqtt_clients_connected',
    help: 'MQTT clients connected to this broker process',
    registers,
    collect() {
      this.set(connectedClients())
    },
  })
  return {
    registry,
    messages: new Counter({ name: 'kennel_mqtt_messages_total', help: 'MQTT publishes accepted, by direction (in = from toys, inbox = from the backend)', labelNames: ['direction'], registers }),
    denials: new Counter({ name: 'kennel_mqtt_denials_total', help: 'MQTT actions refused by topic policy, by kind (publish, subscribe, will, forward)', labelNames: ['kind'], registers }),
    authFailures: new Counter({ name: 'kennel_mqtt_auth_failures_total', help: 'MQTT connections refused during authentication, by reason', labelNames: ['reason'], registers }),
    denylistHits: new Counter({ name: 'kennel_mqtt_denylist_hits_total', help: 'TCP connections refused by the denylist before TLS (R9)', registers }),
    rateLimited: new Counter({ name: 'kennel_mqtt_rate_limited_total', help: 'MQTT actions refused by a rate limit (R6)', labelNames: ['limit'], registers }),
    kicks: new Counter({ name: 'kennel_mqtt_kicks_total', help: 'live sessions closed by the broker, by reason', labelNames: ['reason'], registers }),
    appendFailures: new Gauge({
      name: 'kennel_mqtt_event_append_failures',
      help: 'broker events whose append failed since start',
      registers,
      collect() {
        this.set(appendFailures())
      },
    }),
  }
}
