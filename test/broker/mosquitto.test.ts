import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { startBrokerSystem, uniqueId } from './system.ts'

const run = promisify(execFile)
const have = (cmd: string): boolean =>
  (process.env.PATH ?? '').split(':').some((dir) => fs.existsSync(path.join(dir, cmd)))

const skip =
  have('mosquitto_sub') && have('mosquitto_pub')
    ? false
    : 'mosquitto_pub/mosquitto_sub not installed (.ci/run installs mosquitto-clients)'

t.test('a toy connects with mosquitto_pub/mosquitto_sub and its certificate files', { skip }, async (t) => {
  const sys = await startBrokerSystem(t)
  const id = uniqueId('mosq')
  const d = await sys.enroll(id)
  const tls = [
    '-h',
    'localhost',
    '-p',
    String(sys.port),
    '--cafile',
    d.caFile,
    '--cert',
    d.certFile,
    '--key',
    d.keyFile,
    '-i',
    id,
    '-V',
    'mqttv311',
  ]
  const sub = spawn('mosquitto_sub', [...tls, '-t', `toys/${id}/#`, '-C', '1', '-W', '10', '-q', '1', '-v'])
  t.teardown(() => sub.kill())
  let out = ''
  sub.stdout.on('data', (b: Buffer) => (out += b.toString()))
  const exited = new Promise<number | null>((resolve) => sub.on('exit', resolve))
  // the subscriber's client id is the device id too, so the publisher is a second session of the
  // same toy only after the subscription is in place: publish through the backend's inbox instead
  for (
    let i = 0;
    i < 50 && (await sys.events('SubscriptionGranted')).filter((e) => e.stream === `mqtt-${id}`).length === 0;
    i++
  )
    await new Promise((r) => setTimeout(r, 100))
  await sys.broker.publishToDevice(id, 'greeting', 'hello from kennel')
  t.equal(await exited, 0, 'mosquitto_sub received a message and exited')
  t.equal(out.trim(), `toys/${id}/inbox/greeting hello from kennel`)

  // mosquitto_pub publishes on the toy's own topic; the broker records it
  await run('mosquitto_pub', [...tls, '-t', `toys/${id}/status`, '-m', 'awake', '-q', '1'])
  const accepted = (await sys.events('PublishAccepted')).filter((e) => e.stream === `mqtt-${id}`)
  t.match(accepted.at(-1)?.data, { topic: `toys/${id}/status`, bytes: 5 })

  // and is refused on another toy's topic
  await run('mosquitto_pub', [...tls, '-t', 'toys/someone-else/status', '-m', 'x', '-q', '1']).catch(() => undefined)
  t.match((await sys.events('PublishDenied')).at(-1)?.data, { deviceId: id, topic: 'toys/someone-else/status' })
})
