import t from 'tap'
import type { CertificateRenewed } from '../../devices/events.ts'
import { startBrokerSystem, uniqueId } from './system.ts'

const GRACE_MS = 1500

t.test(
  'when the renewal grace period ends, the session using the superseded certificate is closed and it cannot reconnect',
  async (t) => {
    const sys = await startBrokerSystem(t)
    const id = uniqueId('renewed')
    const device = await sys.enroll(id)
    const client = await sys.connect(device)
    let closedAt = 0
    const closed = new Promise<void>((resolve) => client.once('close', () => ((closedAt = Date.now()), resolve())))

    // the renewal as devices/renew.ts records it, with a grace period of GRACE_MS instead of hours
    const renewedAt = new Date()
    const validUntil = new Date(renewedAt.getTime() + GRACE_MS)
    const renewal: CertificateRenewed = {
      type: 'CertificateRenewed',
      data: {
        deviceId: id,
        serial: 'abc123',
        previousSerial: device.serial,
        renewedAt: renewedAt.toISOString(),
        previousValidUntil: validUntil.toISOString(),
      },
    }
    await sys.store.append(`device-${id}`, [renewal])
    await closed
    t.ok(closedAt >= validUntil.getTime(), 'the session lasted until the grace period ended')

    const err = await sys.connect(device).then(
      () => undefined,
      (e: Error) => e,
    )
    t.ok(err, 'the superseded certificate cannot reconnect')
    const events = (await sys.events('DeviceDisconnected', 'DeviceAuthFailed')).filter((e) => e.stream === `mqtt-${id}`)
    t.match(
      events.map((e) => e.data),
      [{ reason: 'superseded' }, { reason: 'certificate-superseded', serial: device.serial }],
    )
    t.match(
      await sys.broker.metrics.registry.getSingleMetricAsString('kennel_mqtt_kicks_total'),
      /reason="superseded"} 1/,
    )
  },
)

t.test("a renewal leaves the sessions of the device's other certificates alone", async (t) => {
  const sys = await startBrokerSystem(t)
  const id = uniqueId('current')
  const device = await sys.enroll(id)
  const client = await sys.connect(device)
  // a renewal that superseded some older certificate of this device, not the one in use
  const past = new Date(Date.now() - 1000).toISOString()
  await sys.store.append(`device-${id}`, [
    {
      type: 'CertificateRenewed',
      data: {
        deviceId: id,
        serial: device.serial,
        previousSerial: 'dead01',
        renewedAt: past,
        previousValidUntil: past,
      },
    },
  ])
  const ping = await client.publishAsync(`toys/${id}/status`, 'still here', { qos: 1 })
  t.ok(ping, 'the session is still open after the renewal was processed')
  t.ok(client.connected)
})
