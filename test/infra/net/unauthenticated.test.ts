import { EventEmitter } from 'node:events'
import net, { type Socket } from 'node:net'
import t from 'tap'
import {
  type Phase,
  sourceOf,
  UnauthenticatedConnections,
  type UnauthenticatedLimits,
} from '../../../infra/net/unauthenticated.ts'

// R9: the per-source cap and the deadlines before authentication, on real TCP sockets.

interface Server {
  port: number
  /** server-side sockets in accept order, admitted or not */
  accepted: Socket[]
  refused: Array<{ ip: string; source: string; cap: number }>
  /** what the record hook was given: refusals per record */
  records: number[]
  timeouts: Phase[]
  connections: UnauthenticatedConnections
}

async function server(
  t: { teardown(fn: () => unknown): void },
  limits: Partial<UnauthenticatedLimits>,
): Promise<Server> {
  const s: Omit<Server, 'port' | 'connections'> = { accepted: [], refused: [], records: [], timeouts: [] }
  const connections = new UnauthenticatedConnections(
    { handshakeTimeoutMs: 60_000, connectTimeoutMs: 60_000, maxPerSource: 100, ...limits },
    {
      onRefused: (r) => void s.refused.push(r),
      record: async (_, n) => void s.records.push(n),
      onTimeout: (phase) => void s.timeouts.push(phase),
    },
  )
  const srv = net.createServer((socket) => {
    s.accepted.push(socket)
    connections.admit(socket)
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => {
    connections.destroyAll()
    return new Promise<void>((resolve) => srv.close(() => resolve()))
  })
  return { ...s, port: (srv.address() as net.AddressInfo).port, connections }
}

function client(t: { teardown(fn: () => unknown): void }, port: number): { socket: Socket; closed: Promise<void> } {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => undefined)
  t.teardown(() => socket.destroy())
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve())) }
}

async function until(check: () => boolean): Promise<void> {
  const end = Date.now() + 30_000
  while (!check()) {
    if (Date.now() > end) throw new Error('gave up waiting')
    await new Promise((r) => setTimeout(r, 10))
  }
}

t.test(
  'a source over its cap is refused on accept; an authenticated or closed connection frees its place',
  async (t) => {
    const s = await server(t, { maxPerSource: 2 })
    const a = client(t, s.port)
    const b = client(t, s.port)
    await until(() => s.accepted.length === 2)
    const over = [client(t, s.port), client(t, s.port), client(t, s.port)]
    await Promise.all(over.map((c) => c.closed))
    t.same(
      s.refused,
      Array(3).fill({ ip: '127.0.0.1', source: '127.0.0.1', cap: 2 }),
      'the third and later are refused',
    )
    t.same(s.records, [1], 'the first refusal is recorded at once, the others tallied')
    await s.connections.flush()
    t.same(s.records, [1, 2], 'flush records the tally')
    t.equal(s.connections.size, 2)

    s.connections.authenticated(s.accepted[0]!)
    t.equal(s.connections.size, 1, 'authenticated: no longer counted')
    client(t, s.port)
    await until(() => s.accepted.length === 6)
    a.socket.destroy()
    b.socket.destroy()
    await until(() => s.connections.size === 1)
    t.equal(s.refused.length, 3, "the next one took the authenticated one's place; closed ones left")
  },
)

t.test('a silent connection is closed at the handshake deadline, a secured one at the connect deadline', async (t) => {
  const s = await server(t, { handshakeTimeoutMs: 50, connectTimeoutMs: 50 })
  const silent = client(t, s.port)
  await silent.closed
  t.same(s.timeouts, ['handshake'])

  s.timeouts.length = 0
  const quiet = client(t, s.port)
  await until(() => s.accepted.length === 2)
  s.connections.secured(s.accepted[1]!)
  await quiet.closed
  t.same(s.timeouts, ['connect'], 'after the handshake the connect deadline applies')

  const authenticated = client(t, s.port)
  await until(() => s.accepted.length === 3)
  s.connections.authenticated(s.accepted[2]!)
  await new Promise((r) => setTimeout(r, 200))
  t.notOk(authenticated.socket.destroyed, 'no deadline once authenticated')
  t.equal(s.connections.size, 0)
})

t.test('IPv6 addresses count by /64, IPv4-mapped ones as IPv4', async (t) => {
  t.equal(sourceOf('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
  t.equal(sourceOf('2001:db8:1:2::9'), '2001:db8:1:2::/64', 'compressed: the same network')
  t.equal(sourceOf('2001:0db8:0001:0002::'), '2001:db8:1:2::/64', 'leading zeros')
  t.equal(sourceOf('2001:db8:1:3::1'), '2001:db8:1:3::/64', 'the next /64 is another source')
  t.equal(sourceOf('::1'), '0:0:0:0::/64')
  t.equal(sourceOf('fe80::1%eth0'), 'fe80:0:0:0::/64', 'zone index ignored')
  t.equal(sourceOf('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64', 'embedded IPv4 counts as two groups')
  t.equal(sourceOf('::ffff:198.51.100.7'), '198.51.100.7')
  t.equal(sourceOf('198.51.100.7'), '198.51.100.7')

  // loopback has one IPv6 address, so two hosts of one /64 are sockets as the listener sees them
  const refused: string[] = []
  const connections = new UnauthenticatedConnections(
    { handshakeTimeoutMs: 60_000, connectTimeoutMs: 60_000, maxPerSource: 1 },
    { onRefused: (r) => void refused.push(r.ip), record: async () => undefined, onTimeout: () => undefined },
  )
  const peer = (ip: string, port: number): Socket =>
    Object.assign(new EventEmitter(), {
      remoteAddress: ip,
      remotePort: port,
      localAddress: '::',
      localPort: 8883,
      destroy() {},
    }) as unknown as Socket
  t.ok(connections.admit(peer('2001:db8:1:2::1', 1000)))
  t.notOk(connections.admit(peer('2001:db8:1:2:ffff::2', 1001)), 'another address of the same /64 is refused')
  t.ok(connections.admit(peer('2001:db8:1:3::1', 1002)), 'another /64 is not')
  t.same(refused, ['2001:db8:1:2:ffff::2'])
  connections.destroyAll()
})

t.test(
  'an authenticated connection keeps nothing of its admission: no close listener stays on its socket',
  async (t) => {
    const s = await server(t, {})
    client(t, s.port)
    await until(() => s.accepted.length === 1)
    const socket = s.accepted[0]!
    const before = socket.listenerCount('close')
    s.connections.secured(socket)
    t.ok(socket.listenerCount('close') > before, 'watched until authenticated')
    s.connections.authenticated(socket)
    t.ok(socket.listenerCount('close') < before, 'the listeners of accept and handshake are gone')
    t.equal(s.connections.size, 0)
  },
)
