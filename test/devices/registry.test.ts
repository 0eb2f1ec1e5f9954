import t from 'tap'
import { revokeCertificate, revokeDevice } from '../../devices/revoke.ts'
import {
  checkCertificate,
  deviceView,
  devicesProjection,
  normalizeSerial,
  readRegistry,
} from '../../devices/registry.ts'
import { followProjections } from '../../projections/follow.ts'
import { createTestPki, wrongCnCertificate } from '../helpers/pki.ts'

t.test('normalizeSerial: one form for events, metadata and lookups', async (t) => {
  t.equal(normalizeSerial('00:AB:cd:01'), 'abcd01')
  t.equal(normalizeSerial('0ABCD01'), 'abcd01')
  t.equal(normalizeSerial('ab cd'), 'abcd')
  t.equal(normalizeSerial('00'), '0')
})

t.test('checkCertificate answers from the read model what TLS cannot know', async (t) => {
  const pki = await createTestPki(t)
  const a = await pki.enroll('toy-a')
  const b = await pki.enroll('toy-b')
  const c = await pki.enroll('toy-c')
  await revokeDevice(pki.deps(), 'toy-b', 'stolen')
  await revokeCertificate(pki.deps(), c.serial, 'leaked')
  const forged = await wrongCnCertificate(pki.ca, 'toy-a') // signed by the CA key, never recorded
  const followed = followProjections(pki.store, [devicesProjection])
  t.teardown(() => followed.stop())
  await followed.caughtUp
  const docs = followed.docs
  const now = new Date()
  t.same(
    checkCertificate(docs, 'toy-a', a.serial.toUpperCase(), now),
    { ok: true, deviceId: 'toy-a' },
    'node-style uppercase serial accepted',
  )
  t.same(checkCertificate(docs, 'toy-z', a.serial, now), { ok: false, reason: 'unknown-device' })
  t.same(checkCertificate(docs, 'toy-a', forged.serial, now), { ok: false, reason: 'unknown-certificate' })
  t.same(
    checkCertificate(docs, 'toy-a', c.serial, now),
    { ok: false, reason: 'wrong-device' },
    "another toy's certificate",
  )
  t.same(checkCertificate(docs, 'toy-b', b.serial, now), { ok: false, reason: 'device-revoked' })
  t.same(checkCertificate(docs, 'toy-c', c.serial, now), { ok: false, reason: 'certificate-revoked' })
  const view = deviceView(docs, 'toy-b')!
  t.match(view, {
    status: 'revoked',
    revokeReason: 'stolen',
    revokedBy: 'cli:test',
    serials: [b.serial],
    currentSerial: b.serial,
    keyGeneratedByKennel: true,
  })
  t.same(
    JSON.stringify([...(await readRegistry(pki.store)).entries()].sort()),
    JSON.stringify([...(docs as unknown as { entries(): Iterable<unknown[]> }).entries()].sort()),
    'rebuilding from zero gives the same read model',
  )
})

t.test(
  'given an enrolled toy, when the broker records its connect and disconnect, then the read model says when it was last seen',
  async (t) => {
    const pki = await createTestPki(t)
    await pki.enroll('toy-a')
    t.equal(deviceView(await readRegistry(pki.store), 'toy-a')?.lastConnectedAt, undefined, 'never seen yet')
    const connected = await pki.store.append('mqtt-toy-a', [
      {
        type: 'DeviceConnected',
        data: { deviceId: 'toy-a', serial: '1', ip: '127.0.0.1', clean: true, protocolVersion: 4 },
      },
    ])
    const disconnected = await pki.store.append('mqtt-toy-a', [
      { type: 'DeviceDisconnected', data: { deviceId: 'toy-a', reason: 'client-closed', ip: '127.0.0.1' } },
    ])
    await pki.store.append('mqtt-toy-z', [
      {
        type: 'DeviceConnected',
        data: { deviceId: 'toy-z', serial: '2', ip: '127.0.0.1', clean: true, protocolVersion: 4 },
      },
    ])
    const [c, d] = await Promise.all(
      [connected, disconnected].map(
        async (r) => (await pki.store.readAll({ after: r.position - 1, maxCount: 1 }))[0]!.time,
      ),
    )
    const docs = await readRegistry(pki.store)
    t.match(deviceView(docs, 'toy-a'), { status: 'active', lastConnectedAt: c, lastDisconnectedAt: d })
    t.equal(deviceView(docs, 'toy-z'), undefined, 'a connection of a toy never enrolled creates no device')
  },
)
