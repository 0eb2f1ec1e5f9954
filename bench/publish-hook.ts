import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Client, PublishPacket } from 'aedes'
import mqtt from 'mqtt'
import { createBroker } from '../broker/broker.ts'
import { loadDeviceCa } from '../devices/ca.ts'
import { generateKeyPair, privateKeyPem } from '../devices/crypto-keys.ts'
import { loadServerTls } from '../devices/server-tls.ts'
import { loadConfig } from '../infra/config.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import { createLogger } from '../infra/log.ts'
import { signCertificate } from '../test/helpers/pki.ts'
import type { BenchOptions } from './run.ts'

// `npm run bench -- publish-hook`: the CPU the broker spends on a toy's publish in its own code —
// the authorizePublish hook: topic and size check, rate limits, the PublishAccepted event and the
// recorder's batching — with the event store's append made a no-op, so that neither the store,
// nor TLS, nor Aedes, nor the load generator is in the figure. One toy is connected for real
// (its session is the broker's own), then the hook is called with QoS 1 publishes of 64 bytes,
// BATCH in flight, as Aedes calls it. Process CPU time (user + system) per publish, the median
// of ROUNDS rounds; run it on both sides of a change to the broker's publish path.

const BATCH = 100
const PER_ROUND = 40_000
const ROUNDS = 5
const WARMUP = 20_000

export async function run(opts: BenchOptions): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-bench-hook-'))
  const many = '1000000000/second'
  const config = loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_MQTT_PORT: '0',
    KENNEL_MQTT_CONNECT_LIMITS: many,
    KENNEL_MQTT_CONNECT_IP_LIMITS: many,
    KENNEL_MQTT_PUBLISH_LIMITS: many,
    KENNEL_MQTT_BYTE_LIMITS: many,
  })
  const real = await openEventStore(config.eventStoreUrl, { environment: config.env })
  let appended = 0
  const noopAppend = async (_stream: string, events: unknown[]): Promise<never> => {
    appended += events.length
    return {} as never
  }
  // every method but append is the real store's (the broker follows revocations through it)
  const store = new Proxy(real, {
    get: (target, key) => {
      if (key === 'append') return noopAppend
      const value: unknown = Reflect.get(target, key)
      return typeof value === 'function' ? value.bind(target) : value
    },
  }) as EventStore
  const ca = await loadDeviceCa(config)
  const broker = await createBroker({
    config,
    store,
    tls: { ca: ca.trustedPem, ...(await loadServerTls(config, ca)) },
    checkCertificate: () => ({ ok: true }),
    log: createLogger('silent'),
  })
  try {
    const port = await broker.listen(0, '127.0.0.1')
    const keys = await generateKeyPair('P-256')
    const id = 'bench-hook-toy'
    const cert = (await signCertificate({ commonName: id, keys, signer: ca.issuer })).toString('pem')
    const toy = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
      key: await privateKeyPem(keys.privateKey),
      cert,
      ca: ca.trustedPem,
      clientId: id,
      protocolVersion: 4,
      reconnectPeriod: 0,
      keepalive: 600,
      servername: 'localhost',
    })
    await new Promise((resolve, reject) => (toy.once('connect', resolve), toy.once('error', reject)))
    await broker.flushEvents()
    const client = (broker.aedes as unknown as { clients: Record<string, Client> }).clients[id]!
    const payload = Buffer.alloc(64, 7)
    const publishes = async (n: number): Promise<void> => {
      for (let done = 0; done < n; done += BATCH) {
        await Promise.all(
          Array.from({ length: BATCH }, (_, i) => {
            const packet = {
              cmd: 'publish',
              topic: `toys/${id}/echo`,
              payload,
              qos: 1,
              retain: false,
              dup: false,
              messageId: i + 1,
            } as PublishPacket
            return new Promise<void>((resolve, reject) =>
              broker.aedes.authorizePublish(client, packet, (err) => (err ? reject(err) : resolve())),
            )
          }),
        )
      }
    }
    await publishes(WARMUP)
    const samples: number[] = []
    for (let r = 0; r < ROUNDS; r++) {
      const start = process.cpuUsage()
      await publishes(PER_ROUND)
      const used = process.cpuUsage(start)
      samples.push((used.user + used.system) / PER_ROUND)
    }
    toy.end(true)
    samples.sort((a, b) => a - b)
    const round = (n: number): number => Math.round(n * 100) / 100
    const result = {
      cpuMicrosPerPublish: round(samples[Math.floor(ROUNDS / 2)]!),
      min: round(samples[0]!),
      max: round(samples.at(-1)!),
      rounds: ROUNDS,
      perRound: PER_ROUND,
      inFlight: BATCH,
      eventsRecorded: appended,
    }
    const log = (s: string): void => void (opts.json ? process.stderr : process.stdout).write(`${s}\n`)
    log(`broker publish hook (authorizePublish, the store's append a no-op, ${BATCH} in flight, 64-byte QoS 1)`)
    log(
      `CPU per publish: ${result.cpuMicrosPerPublish} µs (median of ${ROUNDS} × ${PER_ROUND}; min ${result.min}, max ${result.max})`,
    )
    return result
  } finally {
    await broker.close()
    await real.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
