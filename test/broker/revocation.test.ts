import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import type { AedesPublishPacket } from 'aedes'
import { revokeCertificate } from '../../devices/revoke.ts'
import { startBrokerSystem, uniqueId } from './system.ts'

const run = promisify(execFile)
const cli = path.resolve(import.meta.dirname, '../../bin/kennel.js')

t.test(
  'revoking a toy from the CLI, in another process, closes its live session; the will is suppressed and reconnects are refused',
  async (t) => {
    const sys = await startBrokerSystem(t)
    const id = uniqueId('stolen')
    const device = await sys.enroll(id)
    const wills: string[] = []
    const watch = (packet: AedesPublishPacket, cb: () => void): void => (wills.push(packet.topic), cb())
    await new Promise<void>((resolve) => sys.broker.aedes.subscribe(`toys/${id}/#`, watch, resolve))
    const client = await sys.connect(device, {
      will: { topic: `toys/${id}/status`, payload: Buffer.from('offline'), qos: 1, retain: false },
    })
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))

    await run(process.execPath, [cli, 'device', 'revoke', id, '--reason', 'reported stolen'], {
      env: { ...process.env, KENNEL_ENV: 'test', KENNEL_DATA_DIR: sys.dir, KENNEL_LOG_LEVEL: 'silent' },
    })
    await closed
    t.pass('the live session was closed')
    await new Promise((r) => setTimeout(r, 200))
    t.same(wills, [], 'the will was not published')

    const err = await sys.connect(device).then(
      () => undefined,
      (e: Error) => e,
    )
    t.ok(err, 'the toy cannot reconnect')
    const events = (await sys.events('DeviceDisconnected', 'DeviceAuthFailed')).filter((e) => e.stream === `mqtt-${id}`)
    t.match(
      events.map((e) => e.data),
      [{ reason: 'revoked' }, { reason: 'device-revoked' }],
    )
    t.match(await sys.broker.metrics.registry.getSingleMetricAsString('kennel_mqtt_kicks_total'), /reason="revoked"} 1/)
  },
)

t.test('revoking one certificate closes the session that uses it', async (t) => {
  const sys = await startBrokerSystem(t)
  const device = await sys.enroll(uniqueId('cert'))
  const client = await sys.connect(device)
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  await revokeCertificate(
    { store: sys.store, actor: 'cli:test', docs: sys.projections.docs },
    device.serial,
    'key compromised',
  )
  await closed
  const err = await sys.connect(device).then(
    () => undefined,
    (e: Error) => e,
  )
  t.ok(err, 'the certificate cannot reconnect')
  t.match((await sys.events('DeviceAuthFailed')).at(-1)!.data, { reason: 'certificate-revoked', serial: device.serial })
})
