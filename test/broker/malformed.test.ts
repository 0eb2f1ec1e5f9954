import { randomBytes } from 'node:crypto'
import net from 'node:net'
import tls from 'node:tls'
import t from 'tap'
import mqttPacket from 'mqtt-packet'
import { nextMessage, startBrokerSystem, uniqueId } from './system.ts'

// Malformed input: mutated MQTT packets over a real TLS session (with a device certificate and
// without one) and random bytes over raw TCP. The broker must keep serving a healthy toy.

const ITERATIONS = 60

// a seeded generator, so that a failure can be replayed
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32
}

function mutate(packet: Buffer, r: () => number): Buffer {
  const b = Buffer.from(packet)
  switch (Math.floor(r() * 5)) {
    case 0: // bit flips
      for (let i = 0; i < 1 + r() * 4; i++) b[Math.floor(r() * b.length)]! ^= 1 << Math.floor(r() * 8)
      return b
    case 1: // bad remaining length (varint with continuation bits everywhere)
      return Buffer.concat([b.subarray(0, 1), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]), b.subarray(2)])
    case 2: // reserved flags set on the fixed header
      b[0] = (b[0]! & 0xf0) | 0x0f
      return b
    case 3: // truncation
      return b.subarray(0, Math.max(1, Math.floor(r() * b.length)))
    default: // random bytes
      return randomBytes(1 + Math.floor(r() * 64))
  }
}

t.test('mutated packets and random bytes do not disturb a healthy toy or crash the broker', async (t) => {
  const sys = await startBrokerSystem(t)
  const healthyId = uniqueId('healthy')
  const healthy = await sys.enroll(healthyId)
  const client = await sys.connect(healthy)
  await client.subscribeAsync(`toys/${healthyId}/#`, { qos: 1 })
  const fuzzer = await sys.enroll(uniqueId('fuzzer'))
  const r = rng(42)
  const templates = [
    mqttPacket.generate({
      cmd: 'publish',
      topic: `toys/${fuzzer.deviceId}/x`,
      payload: Buffer.from('abc'),
      qos: 1,
      messageId: 7,
      retain: false,
      dup: false,
    }),
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 3,
      subscriptions: [{ topic: `toys/${fuzzer.deviceId}/#`, qos: 1 }],
    }),
    mqttPacket.generate({ cmd: 'pingreq' }),
    mqttPacket.generate({ cmd: 'unsubscribe', messageId: 4, unsubscriptions: [`toys/${fuzzer.deviceId}/#`] }),
    mqttPacket.generate({
      cmd: 'connect',
      clientId: fuzzer.deviceId,
      protocolVersion: 4,
      protocolId: 'MQTT',
      clean: true,
      keepalive: 30,
    }),
  ]
  const connect = templates[4]!

  const send = (socket: net.Socket, chunks: Buffer[]): Promise<void> =>
    new Promise((resolve) => {
      socket.on('error', () => undefined)
      socket.on('close', () => resolve())
      for (const c of chunks) socket.write(c)
      setTimeout(() => (socket.destroy(), resolve()), 150)
    })
  const tlsSocket = (withCert: boolean): Promise<net.Socket> =>
    new Promise((resolve) => {
      const s = tls.connect(
        {
          host: '127.0.0.1',
          port: sys.port,
          ca: sys.ca.trustedPem,
          servername: 'localhost',
          ...(withCert ? { key: fuzzer.keyPem, cert: fuzzer.certPem } : {}),
        },
        () => resolve(s),
      )
      s.on('error', () => resolve(s))
    })

  for (let i = 0; i < ITERATIONS; i++) {
    const template = templates[Math.floor(r() * templates.length)]!
    const mutated = mutate(template, r)
    const withCert = i % 3 !== 2
    const socket = i % 5 === 4 ? net.connect(sys.port, '127.0.0.1') : await tlsSocket(withCert)
    // with a certificate, a valid CONNECT first so that later packets reach the MQTT handlers
    await send(socket, withCert && template !== connect ? [connect, mutated] : [mutated])
    if (i % 10 === 9) {
      const seen = nextMessage(client)
      await client.publishAsync(`toys/${healthyId}/alive`, String(i), { qos: 1 })
      t.equal((await seen).payload.toString(), String(i), `the healthy toy is served after ${i + 1} malformed sessions`)
    }
  }
  t.ok(client.connected, 'the healthy toy stayed connected throughout')
  t.equal(sys.broker.connectedClients(), 1, 'no fuzzing session lingers')
  const rss = process.memoryUsage().rss
  t.ok(rss < 1024 * 1024 * 1024, `memory stays bounded (rss ${Math.round(rss / 1e6)} MB)`)
})
