import t from 'tap'
import type { MqttClient } from 'mqtt'
import { revokeDevice } from '../../devices/revoke.ts'
import { connectionDenylistedData } from '../../infra/net/events.ts'
import {
  expiredCertificate,
  foreignCaCertificate,
  notYetValidCertificate,
  selfSignedCertificate,
  wrongCnCertificate,
} from '../helpers/pki.ts'
import {
  type BrokerSystem,
  collectMessages,
  nextMessage,
  startBrokerSystem,
  subscribeCodes,
  uniqueId,
} from './system.ts'

const closed = (client: MqttClient): Promise<void> => new Promise((resolve) => client.once('close', () => resolve()))

// Each attack asserts the refusal, that nothing of another toy was delivered, and the event.

const refusal = (p: Promise<unknown>): Promise<{ code?: unknown; message: string }> =>
  p.then(
    () => {
      throw new Error('the connection was accepted')
    },
    (err: { code?: unknown; message: string }) => err,
  )

async function victimPublishing(
  sys: BrokerSystem,
): Promise<{ id: string; client: MqttClient; publish(): Promise<void> }> {
  const id = uniqueId('victim')
  const device = await sys.enroll(id)
  const client = await sys.connect(device)
  await client.subscribeAsync(`toys/${id}/#`, { qos: 1 })
  return {
    id,
    client,
    async publish() {
      // the victim's own subscription proves each message went through the broker
      const seen = nextMessage(client)
      await client.publishAsync(`toys/${id}/secret`, 'the victim speaks', { qos: 1 })
      await seen
    },
  }
}

t.test('certificate attacks: each is refused before MQTT, with the reason, IP and fingerprint on record', async (t) => {
  const sys = await startBrokerSystem(t)
  const victim = await victimPublishing(sys)
  const serverCa = sys.ca.trustedPem
  const attempts: Array<[string, { keyPem?: string; certPem?: string }, string, boolean]> = [
    ['no certificate at all', {}, 'no-certificate', false],
    [
      'a certificate from another CA, with the victim as CN',
      await foreignCaCertificate(victim.id),
      'untrusted-certificate',
      false,
    ],
    [
      'a self-signed certificate naming the victim',
      await selfSignedCertificate(victim.id),
      'self-signed-certificate',
      false,
    ],
    ['an expired certificate from our CA', await expiredCertificate(sys.ca, victim.id), 'certificate-expired', false],
    [
      'a not-yet-valid certificate from our CA',
      await notYetValidCertificate(sys.ca, victim.id),
      'certificate-not-yet-valid',
      false,
    ],
    [
      'a certificate from our CA that was never issued through enrolment',
      await wrongCnCertificate(sys.ca, victim.id),
      'certificate-unknown',
      true,
    ],
  ]
  for (const [name, creds, reason, trusted] of attempts) {
    const before = (await sys.events('DeviceAuthFailed')).length
    const err = await refusal(
      sys.connect({
        deviceId: victim.id,
        keyPem: creds.keyPem as string,
        certPem: creds.certPem as string,
        caPem: serverCa,
      }),
    )
    t.not(err.code, 0, `${name}: refused`)
    const events = await sys.events('DeviceAuthFailed')
    t.equal(events.length, before + 1, `${name}: one DeviceAuthFailed`)
    const e = events.at(-1)!
    t.match(e.data, { reason, ip: '127.0.0.1' }, `${name}: reason ${reason}`)
    if (creds.certPem) t.match(e.data, { fingerprint: /^[0-9a-f]{64}$/ }, `${name}: fingerprint recorded`)
    t.match(e.stream, trusted ? `mqtt-${victim.id}` : /^security-\d{4}-\d{2}-\d{2}$/, `${name}: stream`)
    t.equal(e.metadata.sourceIp, '127.0.0.1')
  }
  t.equal(
    await sys.broker.metrics.registry
      .getSingleMetricAsString('kennel_mqtt_auth_failures_total')
      .then((s) => s.split('\n').filter((l) => l.startsWith('kennel_mqtt_auth_failures_total{')).length),
    attempts.length,
    'auth failures counted by reason',
  )
  await victim.publish()
  t.equal(sys.broker.connectedClients(), 1, 'only the victim is connected')
})

t.test('a revoked toy cannot connect', async (t) => {
  const sys = await startBrokerSystem(t)
  const id = uniqueId('revoked')
  const device = await sys.enroll(id)
  await revokeDevice({ store: sys.store, actor: 'cli:test' }, id, 'lost')
  await sys.projections.waitFor(await sys.store.headPosition())
  await refusal(sys.connect(device))
  const e = (await sys.events('DeviceAuthFailed')).at(-1)!
  t.match(e.data, { reason: 'device-revoked', deviceId: id, serial: device.serial })
  t.equal(e.stream, `mqtt-${id}`)
})

t.test('a toy cannot use a client id other than its certificate CN (CONNACK 2)', async (t) => {
  const sys = await startBrokerSystem(t)
  const victim = await victimPublishing(sys)
  const attacker = await sys.enroll(uniqueId('attacker'))
  const err = await refusal(sys.connect(attacker, { clientId: victim.id }))
  t.equal(err.code, 2, 'identifier rejected')
  t.match((await sys.events('DeviceAuthFailed')).at(-1)!.data, {
    reason: 'client-id-mismatch',
    deviceId: attacker.deviceId,
    detail: victim.id,
  })
  const empty = await refusal(sys.connect(attacker, { clientId: '', clean: true }))
  t.equal(empty.code, 2, 'an empty client id is refused too')
  await victim.publish()
  t.equal(sys.broker.connectedClients(), 1, 'the victim was not taken over')
})

t.test("a toy cannot subscribe to another toy's topics, directly or with wildcards (SUBACK 0x80)", async (t) => {
  const sys = await startBrokerSystem(t)
  const victim = await victimPublishing(sys)
  const attacker = await sys.enroll(uniqueId('attacker'))
  const client = await sys.connect(attacker)
  const seen = collectMessages(client)
  const filters = [
    `toys/${victim.id}/#`,
    `toys/${victim.id}/secret`,
    '#',
    '+/#',
    `+/${victim.id}/#`,
    'toys/+/secret',
    'toys/#',
    `$share/g/toys/${victim.id}/#`,
    '$share/g/#',
    '$SYS/#',
    `toys/${victim.id}`,
  ]
  for (const filter of filters) {
    t.same(await subscribeCodes(client, [filter]), [128], `${filter}: SUBACK 0x80`)
  }
  t.ok(client.connected, 'denied subscriptions keep the connection')
  await victim.publish()
  await client.publishAsync(`toys/${attacker.deviceId}/ping`, 'x', { qos: 1 })
  await new Promise((r) => setTimeout(r, 200))
  t.same(seen, [], "none of the victim's messages reached the attacker")
  const denied = (await sys.events('SubscriptionDenied')).filter((e) => e.stream === `mqtt-${attacker.deviceId}`)
  t.same(
    denied.map((e) => (e.data as { filter: string }).filter),
    filters,
    'each denial is an event',
  )
})

t.test("a toy cannot publish on another toy's topic: it is disconnected and the message goes nowhere", async (t) => {
  const sys = await startBrokerSystem(t)
  const victim = await victimPublishing(sys)
  const victimSeen = collectMessages(victim.client)
  const attacker = await sys.enroll(uniqueId('attacker'))
  for (const topic of [`toys/${victim.id}/inbox/command`, '$SYS/kennel/kick', 'toys/x\u0000y/a']) {
    const client = await sys.connect(attacker)
    const gone = closed(client)
    client.publish(topic, 'forged', { qos: 1 })
    await gone
    t.pass(`${JSON.stringify(topic)}: disconnected`)
  }
  // MQTT 3.1.1 has no negative acknowledgement at QoS 0: the refusal a toy sees is the closed connection
  const client = await sys.connect(attacker)
  const gone = closed(client)
  client.publish(`toys/${victim.id}/inbox/command`, 'forged at QoS 0', { qos: 0 })
  await gone
  t.pass('QoS 0: disconnected')
  await victim.publish()
  t.same(
    victimSeen.map((m) => m.payload),
    ['the victim speaks'],
    'the victim received only its own message',
  )
  const denied = (await sys.events('PublishDenied')).filter((e) => e.stream === `mqtt-${attacker.deviceId}`)
  t.equal(denied.length, 4, 'each denied publish is an event')
  t.match(denied[3]!.data, { topic: `toys/${victim.id}/inbox/command`, qos: 0 })
  t.match(denied[0]!.data, { topic: `toys/${victim.id}/inbox/command`, will: false, bytes: 6 })
})

t.test("a will on another toy's topic is refused at CONNECT (CONNACK 5) and never published", async (t) => {
  const sys = await startBrokerSystem(t)
  const victim = await victimPublishing(sys)
  const victimSeen = collectMessages(victim.client)
  const attacker = await sys.enroll(uniqueId('attacker'))
  const err = await refusal(
    sys.connect(attacker, {
      will: { topic: `toys/${victim.id}/inbox/command`, payload: Buffer.from('forged will'), qos: 1, retain: false },
    }),
  )
  t.equal(err.code, 5, 'not authorized')
  t.match((await sys.events('PublishDenied')).at(-1)!.data, {
    deviceId: attacker.deviceId,
    topic: `toys/${victim.id}/inbox/command`,
    will: true,
  })
  await victim.publish()
  t.same(
    victimSeen.map((m) => m.payload),
    ['the victim speaks'],
  )
})

t.test(
  'persistent-session trick: a denied filter stored in a clean=false session delivers nothing on reconnect',
  async (t) => {
    const sys = await startBrokerSystem(t)
    const victim = await victimPublishing(sys)
    const attacker = await sys.enroll(uniqueId('attacker'))
    const first = await sys.connect(attacker, { clean: false })
    t.same(await subscribeCodes(first, [`toys/${victim.id}/#`, `toys/${attacker.deviceId}/#`]), [128, 1])
    await first.endAsync()
    await victim.publish()
    await victim.publish()
    await sys.broker.publishToDevice(attacker.deviceId, 'hello', 'queued for the attacker')
    const second = await sys.connect(attacker, { clean: false })
    const seen = collectMessages(second)
    await new Promise((r) => setTimeout(r, 500))
    t.same(
      seen.map((m) => m.topic),
      [`toys/${attacker.deviceId}/inbox/hello`],
      'only its own queued message arrives',
    )
    t.ok(second.connected, 'the restored session did not abort the reconnect')
    t.same(
      (await sys.events('DeviceConnected'))
        .filter((e) => e.stream === `mqtt-${attacker.deviceId}`)
        .map((e) => (e.data as { clean: boolean }).clean),
      [false, false],
      'both connections recorded with clean=false, as their CONNECT said',
    )
  },
)

t.test('an oversize payload is refused and the toy disconnected', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_MAX_PAYLOAD_BYTES: '1024' })
  const device = await sys.enroll(uniqueId('big'))
  const client = await sys.connect(device)
  const gone = closed(client)
  client.publish(`toys/${device.deviceId}/blob`, Buffer.alloc(2048), { qos: 0 })
  await gone
  t.match((await sys.events('PublishDenied')).at(-1)!.data, { reason: /payload larger than 1024/, bytes: 2048 })
  const huge = await sys.connect(device)
  const hugeGone = closed(huge)
  huge.publish(`toys/${device.deviceId}/blob`, Buffer.alloc(200_000), { qos: 0 })
  await hugeGone
  t.pass('a packet far over the limit is cut off while its header is read')
})

t.test('a denylisted address is dropped before TLS; hits are counted, events rate-limited', async (t) => {
  const sys = await startBrokerSystem(t, { KENNEL_DENYLIST: '127.0.0.0/8' })
  const device = await sys.enroll(uniqueId('scanner'))
  for (let i = 0; i < 3; i++) await refusal(sys.connect(device))
  const events = await sys.events('ConnectionDenylisted')
  t.equal(events.length, 1, 'one event for a burst from one address')
  t.match(events[0]!.data, { listener: 'mqtt', ip: '127.0.0.1', port: Number, cidr: '127.0.0.0/8', hits: 1 })
  t.same(
    events[0]!.data,
    connectionDenylistedData(events[0]!.data),
    'written in the one shape the API writes too (infra/net/events.ts), nothing to upcast',
  )
  t.match(
    await sys.broker.metrics.registry.getSingleMetricAsString('kennel_mqtt_denylist_hits_total'),
    /kennel_mqtt_denylist_hits_total 3/,
  )
  t.equal((await sys.events('DeviceAuthFailed', 'DeviceConnected')).length, 0, 'no handshake happened')
  await sys.broker.close()
  t.same(
    (await sys.events('ConnectionDenylisted')).map((e) => (e.data as { hits: number }).hits),
    [1, 2],
    'the rest of the burst is recorded on close: 3 hits, 2 events',
  )
})
