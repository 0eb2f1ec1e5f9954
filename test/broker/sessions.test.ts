import t, { type Test } from 'tap'
import type { TLSSocket } from 'node:tls'
import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { connectPacket, type RawDevice, rawTls } from './raw-client.ts'
import { type BrokerSystem, startBrokerSystem, uniqueId } from './system.ts'

// R19: every DeviceConnected the broker records gets exactly one DeviceDisconnected, with the
// reason the connection ended, however early it ends: before CONNACK, with garbage, or taken over
// by a newer connection of the same toy.

// enough connects for the fuzz loop; the limits themselves are tested in ratelimit.test.ts
const env = { KENNEL_MQTT_CONNECT_LIMITS: '100000/minute', KENNEL_MQTT_CONNECT_IP_LIMITS: '100000/minute' }
/** a packet type reserved by MQTT 3.1.1 (2.2.1): a protocol error wherever it comes */
const GARBAGE = Buffer.from([0x00, 0x00])

interface Connection {
  connectionId: string
  connected: RecordedEvent
  disconnected: RecordedEvent[]
}

/** the device's connections in order, each with the DeviceDisconnected events recorded after it */
async function connectionsOf(sys: BrokerSystem, deviceId: string): Promise<Connection[]> {
  const events = (await sys.events('DeviceConnected', 'DeviceDisconnected')).filter(
    (e) => e.stream === `mqtt-${deviceId}`,
  )
  const connections: Connection[] = []
  for (const e of events) {
    const connectionId = String((e.data as { connectionId?: unknown }).connectionId)
    if (e.type === 'DeviceConnected') connections.push({ connectionId, connected: e, disconnected: [] })
    else connections.find((c) => c.connectionId === connectionId)?.disconnected.push(e)
  }
  return connections
}

const reasonOf = (e: RecordedEvent | undefined): string | undefined =>
  (e?.data as { reason?: string } | undefined)?.reason

/** wait until no connection of the devices is open, then return them */
async function settled(
  sys: BrokerSystem,
  deviceIds: string[],
  expectedConnects: number,
  open = 0,
): Promise<Connection[]> {
  const deadline = Date.now() + 20_000
  for (;;) {
    const all = (await Promise.all(deviceIds.map((id) => connectionsOf(sys, id)))).flat()
    const ended = all.filter((c) => c.disconnected.length > 0).length
    if ((all.length >= expectedConnects && ended === all.length - open) || Date.now() > deadline) return all
    await new Promise((r) => setTimeout(r, 50))
  }
}

function assertPaired(t: Test, connections: Connection[], label: string): void {
  const unpaired = connections.filter((c) => c.disconnected.length !== 1)
  t.same(
    unpaired.map((c) => ({ connectionId: c.connectionId, disconnects: c.disconnected.length })),
    [],
    `${label}: every DeviceConnected has exactly one DeviceDisconnected`,
  )
  for (const c of connections) {
    const d = c.disconnected[0]
    if (d && d.position <= c.connected.position)
      t.fail(`${label}: the DeviceDisconnected of ${c.connectionId} comes before its DeviceConnected`)
  }
}

/** TLS with the toy's certificate, CONNECT (and `tail` in the same write), then `then` (close,
 * garbage, ...) without reading CONNACK */
async function early(
  sys: BrokerSystem,
  device: RawDevice,
  then: (socket: TLSSocket) => void,
  tail: Buffer = Buffer.alloc(0),
): Promise<void> {
  const raw = await rawTls(sys.port, device, sys.ca.trustedPem)
  raw.socket.write(Buffer.concat([connectPacket(device.deviceId), tail]))
  then(raw.socket)
  await raw.closed
}

t.test(
  'a toy that closes its socket right after CONNECT, before CONNACK, gets its DeviceDisconnected (connection-lost)',
  async (t) => {
    const sys = await startBrokerSystem(t, env)
    const device = await sys.enroll(uniqueId('hasty'))
    for (let i = 0; i < 20; i++) await early(sys, device, (s) => s.destroy())
    const connections = await settled(sys, [device.deviceId], 1)
    t.ok(connections.length > 0, `${connections.length} connects reached DeviceConnected`)
    assertPaired(t, connections, 'closed before CONNACK')
    t.same([...new Set(connections.map((c) => reasonOf(c.disconnected[0])))], ['connection-lost'])
    t.equal(sys.broker.connectedClients(), 0, 'no session lingers')
  },
)

t.test('a toy that sends garbage right behind its CONNECT gets its DeviceDisconnected (protocol-error)', async (t) => {
  const sys = await startBrokerSystem(t, env)
  const device = await sys.enroll(uniqueId('garbled'))
  // in the CONNECT's own write, so the broker reads it before it answers the CONNECT
  for (let i = 0; i < 20; i++) await early(sys, device, () => undefined, GARBAGE)
  const connections = await settled(sys, [device.deviceId], 1)
  t.ok(connections.length > 0, `${connections.length} connects reached DeviceConnected`)
  assertPaired(t, connections, 'garbage behind CONNECT')
  t.same([...new Set(connections.map((c) => reasonOf(c.disconnected[0])))], ['protocol-error'])
})

t.test(
  'a session taken over by a newer connection of the same toy ends as taken-over; the newer one stays open',
  async (t) => {
    const sys = await startBrokerSystem(t, env)
    const device = await sys.enroll(uniqueId('twin'))
    const first = await sys.connect(device)
    const firstClosed = new Promise<void>((resolve) => first.once('close', () => resolve()))
    const second = await sys.connect(device)
    await firstClosed
    let connections = await settled(sys, [device.deviceId], 2, 1)
    t.equal(connections.length, 2)
    t.same(
      connections.map((c) => c.disconnected.map(reasonOf)),
      [['taken-over'], []],
      'the first taken over, the second open',
    )
    t.ok(second.connected, 'the newer connection is live')
    await second.endAsync()
    connections = await settled(sys, [device.deviceId], 2)
    assertPaired(t, connections, 'take-over')
    t.same(
      connections.map((c) => reasonOf(c.disconnected[0])),
      ['taken-over', 'client-disconnect'],
    )
  },
)

t.test('sessions open when the broker closes end as broker-shutdown', async (t) => {
  const sys = await startBrokerSystem(t, env)
  const device = await sys.enroll(uniqueId('sleepy'))
  const client = await sys.connect(device)
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  await sys.broker.close()
  await closed
  const connections = await connectionsOf(sys, device.deviceId)
  assertPaired(t, connections, 'shutdown')
  t.same(
    connections.map((c) => reasonOf(c.disconnected[0])),
    ['broker-shutdown'],
  )
})

// a seeded generator, so that a failure can be replayed
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32
}

t.test('100 random early closes, garbage and take-overs: as many DeviceDisconnected as DeviceConnected', async (t) => {
  const sys = await startBrokerSystem(t, env)
  const devices = await Promise.all([0, 1, 2].map(() => sys.enroll(uniqueId('fuzzed'))))
  const r = rng(13)
  const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
  const endings: Array<[(s: TLSSocket) => void, Buffer?]> = [
    [(s) => s.destroy()],
    [(s) => s.end()],
    [() => undefined, GARBAGE],
    [(s) => s.write(GARBAGE)],
    [(s) => void pause(r() * 10).then(() => s.write(GARBAGE))],
    [(s) => void pause(r() * 20).then(() => s.destroy())],
  ]
  // five at a time, on three toys: some connections of one toy overlap and take each other over
  for (let i = 0; i < 100; i += 5) {
    await Promise.all(
      [0, 1, 2, 3, 4].map(() => {
        const [then, tail] = endings[Math.floor(r() * endings.length)]!
        return early(sys, devices[Math.floor(r() * devices.length)]!, then, tail)
      }),
    )
  }
  const connections = await settled(
    sys,
    devices.map((d) => d.deviceId),
    1,
  )
  const disconnects = connections.reduce((n, c) => n + c.disconnected.length, 0)
  t.ok(connections.length >= 20, `${connections.length} connects reached DeviceConnected`)
  t.equal(disconnects, connections.length, 'as many DeviceDisconnected as DeviceConnected')
  assertPaired(t, connections, 'fuzz')
  t.equal(sys.broker.connectedClients(), 0, 'no session lingers')
})
