import { createHash } from 'node:crypto'
import t, { type Test } from 'tap'
import mqtt, { type MqttClient, Store } from 'mqtt'
import { createBroker } from '../../broker/broker.ts'
import { checkCertificate } from '../../devices/registry.ts'
import { loadServerTls } from '../../devices/server-tls.ts'
import { KennelError } from '../../infra/errors.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'
import { createLogger } from '../../infra/log.ts'
import { collectMessages, startBrokerSystem, uniqueId } from './system.ts'

// R19: a toy's publish is acknowledged (PUBACK) and routed only once its PublishAccepted event is
// committed, and refused when it cannot be. The broker under test appends through a gate in front
// of the real store, which holds or fails the PublishAccepted appends on demand.

type GateMode = 'open' | 'hold' | 'fail'

interface Gate {
  store: EventStore
  mode: GateMode
  /** PublishAccepted appends waiting at the gate */
  readonly held: number
  /** PublishAccepted appends refused by the gate */
  readonly refused: number
  /** refuse DeviceConnected appends as well */
  failConnects: boolean
  open(): void
}

function gate(inner: EventStore): Gate {
  const held: Array<() => void> = []
  let refused = 0
  const g: Gate = {
    mode: 'open',
    failConnects: false,
    get held() {
      return held.length
    },
    get refused() {
      return refused
    },
    open() {
      g.mode = 'open'
      for (const release of held.splice(0)) release()
    },
    store: Object.create(inner, {
      append: {
        value: async (
          stream: string,
          events: Parameters<EventStore['append']>[1],
          options: Parameters<EventStore['append']>[2],
        ) => {
          if (g.failConnects && events.some((e) => e.type === 'DeviceConnected'))
            throw new KennelError('KENNEL_ERR_UNAVAILABLE', 'the gate refuses the append')
          if (events.some((e) => e.type === 'PublishAccepted')) {
            if (g.mode === 'fail') {
              refused++
              throw new KennelError('KENNEL_ERR_UNAVAILABLE', 'the gate refuses the append')
            }
            if (g.mode === 'hold') await new Promise<void>((resolve) => held.push(resolve))
          }
          return inner.append(stream, events, options)
        },
      },
    }) as EventStore,
  }
  return g
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex')

async function until(what: string, check: () => boolean | Promise<boolean>, deadlineMs = 20_000): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

async function gatedBroker(t: Test) {
  const sys = await startBrokerSystem(t)
  const g = gate(sys.store)
  const broker = await createBroker({
    config: sys.config,
    store: g.store,
    tls: { ca: sys.ca.trustedPem, ...(await loadServerTls(sys.config, sys.ca)) },
    checkCertificate: (id, serial, now) => checkCertificate(sys.projections.docs, id, serial, now),
    log: createLogger('silent'),
  })
  t.teardown(() => broker.close())
  const port = await broker.listen(0, '127.0.0.1')
  const id = uniqueId('toy')
  const device = await sys.enroll(id)
  const accepted = async (payload: string): Promise<number> => {
    await broker.flushEvents()
    return (await sys.store.readAll({ filter: { types: ['PublishAccepted'] } })).filter(
      (e) => (e.data as { sha256: string }).sha256 === sha256(payload),
    ).length
  }
  return { sys, g, broker, port, id, device, accepted }
}

t.test('a publish is acknowledged and routed only once its PublishAccepted is committed', async (t) => {
  const { sys, g, port, id, device, accepted } = await gatedBroker(t)
  const toy = await sys.connect(device, { port })
  await toy.subscribeAsync(`toys/${id}/#`, { qos: 1 })
  const received = collectMessages(toy)

  g.mode = 'hold'
  let acked = false
  const qos1 = toy.publishAsync(`toys/${id}/status`, 'held-qos1', { qos: 1 }).then(() => (acked = true))
  await until('the PublishAccepted append to reach the gate', () => g.held > 0)
  // a generous pause: without the control the PUBACK and the delivery would come at once
  await new Promise((r) => setTimeout(r, 300))
  t.notOk(acked, 'no PUBACK while the event is not committed')
  t.same(received, [], 'not routed while the event is not committed')
  g.open()
  await qos1
  await until('the delivery', () => received.length === 1)
  t.equal(await accepted('held-qos1'), 1, 'PUBACK after the commit of exactly one PublishAccepted')

  g.mode = 'hold'
  toy.publish(`toys/${id}/status`, 'held-qos0', { qos: 0 })
  await until('the QoS 0 PublishAccepted append to reach the gate', () => g.held > 0)
  await new Promise((r) => setTimeout(r, 300))
  t.equal(received.length, 1, 'a QoS 0 message is not routed before its event is committed')
  g.open()
  await until('the QoS 0 delivery', () => received.length === 2)
  t.same(
    received.map((m) => m.payload),
    ['held-qos1', 'held-qos0'],
  )
})

t.test('a CONNECT whose DeviceConnected cannot be recorded gets CONNACK 3 (server unavailable)', async (t) => {
  const { sys, g, port, device } = await gatedBroker(t)
  g.failConnects = true
  const err = await sys.connect(device, { port }).then(
    () => undefined,
    (e: { code?: number }) => e,
  )
  t.equal(err?.code, 3, 'refused with CONNACK 3: try later')
  g.failConnects = false
  await (await sys.connect(device, { port })).endAsync()
  t.pass('connects once the store records again')
})

t.test(
  'a publish that cannot be recorded is refused: no PUBACK, not routed, the connection closes; the toy re-sends it and it is recorded once',
  async (t) => {
    const { sys, g, port, id, device, accepted } = await gatedBroker(t)
    const toy: MqttClient = await sys.connect(device, { port, reconnectPeriod: 100, clean: false })
    await toy.subscribeAsync(`toys/${id}/#`, { qos: 1 })
    const received = collectMessages(toy)

    g.mode = 'fail'
    let acked = false
    const published = toy.publishAsync(`toys/${id}/status`, 'refused-once', { qos: 1 }).then(() => (acked = true))
    await new Promise<void>((resolve) => toy.once('close', () => resolve()))
    t.notOk(acked, 'no PUBACK for the publish that could not be recorded')
    t.ok(g.refused >= 2, `the append was retried before the publish was refused (${g.refused} attempts)`)
    t.same(received, [], 'the refused message was not routed')
    t.equal(await accepted('refused-once'), 0, 'and not recorded')
    // the DeviceDisconnected is recorded when the broker's side of the socket closes
    const lastDisconnect = async () =>
      (await sys.events('DeviceDisconnected')).filter((e) => e.stream === `mqtt-${id}`).at(-1)?.data
    await until('the DeviceDisconnected', async () => (await lastDisconnect()) !== undefined)
    t.match(await lastDisconnect(), { reason: 'event-store-unavailable' })

    g.open()
    await published
    t.pass('after reconnecting, the toy re-sent the message and got its PUBACK')
    await until('the delivery', () => received.length >= 1)
    t.equal(received[0]?.payload, 'refused-once')
    t.equal(await accepted('refused-once'), 1, 'recorded exactly once')
  },
)

t.test(
  'a publish whose event commits after its connection closed is recorded once: the re-send is acknowledged and routed on that event',
  async (t) => {
    const { sys, g, port, id, device, accepted } = await gatedBroker(t)
    // the toy's in-flight messages outlive its connection in this store, as a toy's own would
    const outgoingStore = new Store()
    const first: MqttClient = await sys.connect(device, { port, clean: false, outgoingStore })
    await first.subscribeAsync(`toys/${id}/#`, { qos: 1 })

    g.mode = 'hold'
    void first.publishAsync(`toys/${id}/status`, 'committed-late', { qos: 1 }).catch(() => undefined)
    await until('the PublishAccepted append to reach the gate', () => g.held > 0)
    const disconnects = async () =>
      (await sys.events('DeviceDisconnected')).filter((e) => e.stream === `mqtt-${id}`).length
    const before = await disconnects()
    first.stream.destroy()
    // (not broker.flushEvents(): it would wait for the held append)
    await until('the broker to see the connection closed', async () => (await disconnects()) > before)
    g.open()
    await until('the late commit', async () => (await accepted('committed-late')) === 1)

    // the toy reconnects and re-sends what its store holds, with the same packet identifier
    const pubacks: number[] = []
    const second = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
      key: device.keyPem,
      cert: device.certPem,
      ca: device.caPem,
      clientId: id,
      protocolVersion: 4,
      reconnectPeriod: 0,
      clean: false,
      outgoingStore,
    })
    t.teardown(() => second.endAsync(true))
    second.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback') pubacks.push(packet.messageId!)
    })
    const received = collectMessages(second)
    await until('the PUBACK of the re-send', () => pubacks.length === 1)
    await until('the delivery', () => received.length >= 1)
    t.same(
      received.map((m) => m.payload),
      ['committed-late'],
      'delivered once',
    )
    t.equal(await accepted('committed-late'), 1, 'recorded exactly once')

    await second.publishAsync(`toys/${id}/status`, 'committed-late', { qos: 1 })
    await until('the second delivery', () => received.length >= 2)
    t.equal(await accepted('committed-late'), 2, 'a later publish of the same payload is a new message, recorded again')
  },
)
