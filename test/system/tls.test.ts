import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { loadConfig } from '../../infra/config.ts'
import { createLogger } from '../../infra/log.ts'
import { everyRole, startKennel } from '../../bin/start.ts'

// R18: TLS 1.2 minimum, 1.3 preferred, only forward-secret AEAD suites, on both listeners.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-tls-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const config = loadConfig({
  KENNEL_ENV: 'test',
  KENNEL_DATA_DIR: dir,
  KENNEL_MQTT_PORT: '0',
  KENNEL_API_PORT: '0',
  KENNEL_METRICS_PORT: '0',
  KENNEL_LOG_LEVEL: 'silent',
})
const kennel = everyRole(await startKennel(config, createLogger('silent')))
t.teardown(() => kennel.stop())

function handshake(
  port: number,
  options: tls.ConnectionOptions,
): Promise<{ protocol: string | null; cipher: string } | { error: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      servername: 'localhost',
      port,
      ca: kennel.ca.trustedPem,
      ...options,
    })
    socket.once('secureConnect', () => {
      resolve({ protocol: socket.getProtocol(), cipher: socket.getCipher().name })
      socket.destroy()
    })
    socket.once('error', (err) => resolve({ error: err.message }))
  })
}

for (const [listener, port] of [
  ['MQTT', kennel.ports.mqtt],
  ['API', kennel.ports.api],
] as const) {
  t.test(`${listener}: TLS 1.3 is preferred`, async (t) => {
    t.match(await handshake(port, {}), { protocol: 'TLSv1.3' })
  })

  t.test(`${listener}: TLS 1.2 is accepted with an ECDHE AEAD suite`, async (t) => {
    const r = await handshake(port, { maxVersion: 'TLSv1.2' })
    t.match(r, { protocol: 'TLSv1.2', cipher: /^ECDHE-.*(GCM|CHACHA20)/ })
  })

  t.test(`${listener}: TLS 1.1 and 1.0 are refused`, async (t) => {
    const r = await handshake(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })
    t.ok('error' in r, `refused: ${JSON.stringify(r)}`)
  })

  t.test(`${listener}: TLS 1.2 without forward secrecy or with CBC is refused`, async (t) => {
    for (const ciphers of ['AES128-GCM-SHA256', 'AES256-SHA', 'ECDHE-RSA-AES128-SHA', 'ECDHE-ECDSA-AES128-SHA']) {
      const r = await handshake(port, { maxVersion: 'TLSv1.2', ciphers })
      t.ok('error' in r, `${ciphers} refused`)
    }
  })
}
