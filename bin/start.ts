import type { Config } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { createBroker, type Broker } from '../broker/broker.ts'
import { loadDeviceCa } from '../devices/ca.ts'
import { checkCertificate, devicesProjection } from '../devices/registry.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { followProjections } from '../projections/follow.ts'

// The composition root: the only place that wires broker/, api/, projections/ and devices/
// together and listens (STYLE §1). Tests call startKennel with port 0 and a temporary data dir.

export interface RunningKennel {
  config: Config
  store: EventStore
  ports: { mqtt?: number; api?: number; metrics?: number }
  stop(): Promise<void>
}

export async function startKennel(config: Config, log: Logger): Promise<RunningKennel> {
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  log.info({ eventStore: store.kind, environment: store.environment, dataDir: config.dataDir }, 'event store open')
  const stops: Array<() => Promise<void>> = [() => store.close()]
  const ports: RunningKennel['ports'] = {}
  const broker = await startBroker(config, store, log, stops)
  ports.mqtt = await broker.listen(config.mqttPort, config.host)
  log.info({ host: config.host, port: ports.mqtt }, 'MQTT broker listening (mutual TLS)')
  return {
    config,
    store,
    ports,
    async stop() {
      for (const stop of stops.reverse()) await stop()
    },
  }
}

// The MQTT broker (broker/): device CA and server certificate from devices/, certificates
// checked against the devices read model, revocations followed from the store (R2, R3).
async function startBroker(config: Config, store: EventStore, log: Logger, stops: Array<() => Promise<void>>): Promise<Broker> {
  const ca = await loadDeviceCa(config)
  const serverTls = await loadServerTls(config, ca)
  const devices = followProjections(store, [devicesProjection])
  stops.push(() => devices.stop())
  await devices.caughtUp
  const broker = await createBroker({
    config,
    store,
    tls: { ca: ca.trustedPem, ...serverTls },
    checkCertificate: (deviceId, serial, now) => checkCertificate(devices.docs, deviceId, serial, now),
    log: log.child({ component: 'broker' }),
  })
  stops.push(() => broker.close())
  return broker
}
