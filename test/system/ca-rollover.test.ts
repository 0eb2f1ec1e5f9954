import 'reflect-metadata'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as x509 from '@peculiar/x509'
import mqtt from 'mqtt'
import t, { type Test } from 'tap'
import { everyRole, startKennel, type FullKennel } from '../../bin/start.ts'
import { caIdOf, loadDeviceCa } from '../../devices/ca.ts'
import { generateKeyPair, privateKeyPem } from '../../devices/crypto-keys.ts'
import { enrollDevice } from '../../devices/enroll.ts'
import { issueDevelopmentServerCertificate } from '../../devices/server-tls.ts'
import { loadConfig, type Config } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { createLogger } from '../../infra/log.ts'
import { request } from '../api/helpers.ts'
import { foreignCaCertificate, makeCsr, writeCredentials } from '../helpers/pki.ts'

// R18: a device-CA rollover made by the CLI while kennel runs must not cut off any toy. Toys
// enrolled before and after it connect over MQTT and call a device route, without a restart and
// after one; a toy enrolled before renews and keeps working with what renewal hands it. The toys
// use exactly the files `kennel device enroll` wrote (ca.crt is their only trust in the server).

const bin = path.resolve(import.meta.dirname, '../../bin/kennel.js')
const DEADLINE_MS = 30_000

interface Toy {
  id: string
  keyPem: string
  certPem: string
  caPem: string
}

function tmpDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-rollover-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

function configFor(dir: string): Config {
  return loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_MQTT_PORT: '0',
    KENNEL_API_PORT: '0',
    KENNEL_METRICS_PORT: '0',
    KENNEL_LOG_LEVEL: 'silent',
  })
}

function cli(dir: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: dir, USER: 'ops', KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** `kennel device enroll` in another process; the toy keeps the three files it wrote */
async function enrollWithCli(t: Test, dir: string, id: string): Promise<Toy> {
  const out = path.join(dir, 'toys', id)
  const r = await cli(dir, ['device', 'enroll', id, '--out', out])
  t.equal(r.code, 0, `kennel device enroll ${id}`, { stderr: r.stderr })
  const read = (f: string) => fs.readFileSync(path.join(out, f), 'utf8')
  return { id, keyPem: read('device.key'), certPem: read('device.crt'), caPem: read('ca.crt') }
}

async function rolloverWithCli(t: Test, dir: string): Promise<string> {
  const r = await cli(dir, ['ca', 'rollover'])
  t.equal(r.code, 0, 'kennel ca rollover', { stderr: r.stderr })
  return fs.readFileSync(path.join(dir, 'ca', 'current'), 'utf8').trim()
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting: ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** MQTT over mutual TLS with the toy's files; resolves once a QoS 1 publish is acknowledged */
async function mqttRoundTrip(port: number, toy: Toy): Promise<void> {
  const client = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
    key: toy.keyPem,
    cert: toy.certPem,
    ca: toy.caPem,
    clientId: toy.id,
    reconnectPeriod: 0,
    connectTimeout: 20_000,
  })
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve())
      client.once('error', reject)
      client.once('close', () =>
        reject(Object.assign(new Error('connection closed before CONNACK'), { code: 'closed' })),
      )
    })
    await client.publishAsync(`toys/${toy.id}/telemetry`, 'battery=97', { qos: 1 })
  } finally {
    await client.endAsync(true)
  }
}

/** why a connect failed; `serverRefused`: the toy could not verify the server (no retry helps) */
async function mqttAttempt(
  port: number,
  toy: Toy,
): Promise<{ connected: boolean; why: string; serverRefused: boolean }> {
  try {
    await mqttRoundTrip(port, toy)
    return { connected: true, why: '', serverRefused: false }
  } catch (err) {
    const code = String((err as NodeJS.ErrnoException).code ?? '')
    return {
      connected: false,
      why: `${code} ${(err as Error).message}`,
      serverRefused: /CERT|SIGNATURE|ISSUER/.test(code),
    }
  }
}

const deviceRoute = (port: number, toy: Toy) =>
  request(port, { method: 'GET', path: '/v1/device/recordings', ca: toy.caPem, key: toy.keyPem, cert: toy.certPem })

/** Every toy reaches the broker and a device route. A toy the CLI enrolled moments ago may not be
 * in the broker's registry yet (another process wrote it): its refused connects are retried. */
async function allConnect(t: Test, kennel: FullKennel, toys: Toy[], when: string): Promise<void> {
  await kennel.projections.waitFor(await kennel.store.headPosition(), DEADLINE_MS)
  for (const toy of toys) {
    const api = await deviceRoute(kennel.ports.api, toy)
    t.equal(api.status, 200, `${toy.id} calls a device route ${when}`, { body: api.body })
    const deadline = Date.now() + DEADLINE_MS
    let attempt = await mqttAttempt(kennel.ports.mqtt, toy)
    while (!attempt.connected && !attempt.serverRefused && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      attempt = await mqttAttempt(kennel.ports.mqtt, toy)
    }
    t.ok(attempt.connected, `${toy.id} publishes over MQTT ${when}${attempt.why ? `: ${attempt.why}` : ''}`)
  }
}

/** POST /v1/device/certificate with the toy's current certificate: the toy keeps what it gets */
async function renew(t: Test, port: number, toy: Toy): Promise<Toy> {
  const csr = await makeCsr({ commonName: toy.id })
  const res = await request(port, {
    method: 'POST',
    path: '/v1/device/certificate',
    ca: toy.caPem,
    key: toy.keyPem,
    cert: toy.certPem,
    body: { csr: csr.csrPem },
  })
  t.equal(res.status, 200, `${toy.id} renews over the API`, { body: res.body })
  const body = res.json() as { certPem: string; caPem: string }
  return { id: toy.id, keyPem: csr.keyPem, certPem: body.certPem, caPem: body.caPem }
}

function issuerName(certPem: string): string {
  return new x509.X509Certificate(certPem).issuer
}

function caPemOf(dir: string, caId: string): string {
  return fs.readFileSync(path.join(dir, 'ca', caId, 'ca.crt'), 'utf8')
}

function caSubject(dir: string, caId: string): string {
  return new x509.X509Certificate(caPemOf(dir, caId)).subject
}

/** a toy whose certificate comes from a CA that is not kennel's, trusting kennel's server */
async function refusesStrangers(t: Test, kennel: FullKennel, serverTrustPem: string): Promise<void> {
  const asStranger = { id: 'toy-stranger', ...(await foreignCaCertificate('toy-stranger')), caPem: serverTrustPem }
  const api = await deviceRoute(kennel.ports.api, asStranger)
  t.equal(api.status, 401, 'a certificate from neither CA is refused on the API')
  t.equal(api.json().error.code, 'KENNEL_ERR_CERT_INVALID')
  t.notOk(
    (await mqttAttempt(kennel.ports.mqtt, asStranger)).connected,
    'a certificate from neither CA is refused on MQTT',
  )
}

async function start(t: Test, config: Config): Promise<FullKennel> {
  const kennel = everyRole(await startKennel(config, createLogger('silent')))
  t.teardown(() => kennel.stop())
  return kennel
}

t.test(
  'enrol → rollover by the CLI while kennel runs → enrol → restart: every toy connects, an old toy renews (R18)',
  async (t) => {
    const dir = tmpDir(t)
    const config = configFor(dir)
    let kennel = await start(t, config)
    const a = await enrollWithCli(t, dir, 'toy-a')
    const c = await enrollWithCli(t, dir, 'toy-c')
    await allConnect(t, kennel, [a, c], 'before the rollover')

    const before = kennel.ca.issuer.info.caId
    const next = await rolloverWithCli(t, dir)
    t.not(next, before, 'the CLI made a new issuing CA')
    const b = await enrollWithCli(t, dir, 'toy-b')
    t.equal(
      issuerName(b.certPem),
      caSubject(dir, next),
      'the toy enrolled after the rollover has a certificate of the new CA',
    )
    await allConnect(t, kennel, [a, b], 'after the rollover, without a restart')
    await until('the running kennel picks up the rollover', () => kennel.ca.issuer.info.caId === next)
    const cRenewed = await renew(t, kennel.ports.api, c)
    t.equal(issuerName(cRenewed.certPem), caSubject(dir, next), 'a renewal without a restart is issued by the new CA')
    await allConnect(t, kennel, [cRenewed], 'with the certificate renewed before the restart')

    await kennel.stop()
    kennel = await start(t, config)
    await allConnect(t, kennel, [a, b], 'after a restart')
    const aRenewed = await renew(t, kennel.ports.api, a)
    t.equal(issuerName(aRenewed.certPem), caSubject(dir, next), 'the renewed certificate is issued by the new CA')
    t.ok(aRenewed.caPem.includes(caPemOf(dir, next).trim()), 'the trust bundle delivered with it holds the new CA')
    await allConnect(t, kennel, [aRenewed], 'with the renewed certificate and the trust bundle delivered with it')
    await refusesStrangers(t, kennel, a.caPem)
  },
)

// --- a data dir made before the server had its own trust anchor ------------------------------
// Until then every development CA was a self-signed device CA (path length 0), the server
// certificate was issued by whichever was current, and a toy's ca.crt held every CA that existed
// when it was enrolled. The fixtures below write exactly that layout.

const DAY = 86_400_000

async function writeLegacyCa(dir: string, environment: string, createdAt: Date): Promise<string> {
  const keys = await generateKeyPair('P-256')
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(16).toString('hex'),
    name: `CN=kennel development device CA ${createdAt.toISOString().replace(/[-:.]/g, '')}, OU=development, O=kennel`,
    notBefore: new Date(createdAt.getTime() - 5 * 60_000),
    notAfter: new Date(createdAt.getTime() + 3650 * DAY),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  const caId = caIdOf(cert)
  const caDir = path.join(dir, 'ca', caId)
  fs.mkdirSync(caDir, { recursive: true, mode: 0o700 })
  fs.writeFileSync(path.join(caDir, 'ca.key'), await privateKeyPem(keys.privateKey), { mode: 0o600 })
  fs.writeFileSync(path.join(caDir, 'ca.crt'), `${cert.toString('pem')}\n`)
  fs.writeFileSync(
    path.join(caDir, 'ca.json'),
    `${JSON.stringify({ development: true, environment, createdAt: createdAt.toISOString() })}\n`,
  )
  fs.writeFileSync(path.join(dir, 'ca', 'current'), `${caId}\n`, { mode: 0o600 })
  return caId
}

/** what the earlier `kennel device enroll` wrote: ca.crt = every CA in the data dir */
async function enrollLegacy(config: Config, id: string): Promise<Toy> {
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  try {
    const ca = await loadDeviceCa(config)
    const toy = await enrollDevice({ store, ca, config, actor: 'cli:ops' }, id)
    writeCredentials(path.join(config.dataDir, 'toys', id), toy)
    return { id, keyPem: toy.keyPem, certPem: toy.certPem, caPem: toy.caPem }
  } finally {
    await store.close()
  }
}

t.test(
  'a data dir from before the change: toys enrolled before and after an old rollover, an upgrade, a rollover and a restart all connect (R18)',
  async (t) => {
    const dir = tmpDir(t)
    const config = configFor(dir)
    const first = await writeLegacyCa(dir, config.env, new Date(Date.now() - 30 * DAY))
    const a = await enrollLegacy(config, 'toy-a')
    t.equal((a.caPem.match(/BEGIN CERTIFICATE/g) ?? []).length, 1, 'toy-a trusts only the first CA')
    const second = await writeLegacyCa(dir, config.env, new Date(Date.now() - 10 * DAY))
    const b = await enrollLegacy(config, 'toy-b')
    t.equal(issuerName(b.certPem), caSubject(dir, second))
    // the earlier server certificate: issued by the CA current at the last start
    const legacyCa = await loadDeviceCa(config)
    const legacyServer = await issueDevelopmentServerCertificate(
      { ...legacyCa, serverIssuer: legacyCa.issuer },
      new Date(),
    )
    fs.mkdirSync(path.join(dir, 'tls'), { recursive: true, mode: 0o700 })
    fs.writeFileSync(path.join(dir, 'tls', 'server.pem'), legacyServer.key + legacyServer.cert, { mode: 0o600 })

    let kennel = await start(t, config)
    const serverPem = fs.readFileSync(path.join(dir, 'tls', 'server.pem'), 'utf8')
    t.equal(
      issuerName(serverPem.slice(serverPem.indexOf('-----BEGIN CERTIFICATE-----'))),
      caSubject(dir, first),
      'the server certificate is issued by the first CA, which every toy trusts',
    )
    await allConnect(t, kennel, [a, b], 'after the upgrade')

    const third = await rolloverWithCli(t, dir)
    t.not(third, second)
    await until('the running kennel picks up the rollover', () => kennel.ca.issuer.info.caId === third)
    const c = await enrollWithCli(t, dir, 'toy-c')
    t.equal(issuerName(c.certPem), caSubject(dir, third))
    await allConnect(t, kennel, [a, b, c], 'after a rollover, without a restart')

    await kennel.stop()
    kennel = await start(t, config)
    await allConnect(t, kennel, [a, b, c], 'after a restart')
    const aRenewed = await renew(t, kennel.ports.api, a)
    t.equal(issuerName(aRenewed.certPem), caSubject(dir, third))
    await allConnect(t, kennel, [aRenewed], 'with the renewed certificate and its trust bundle')
    await refusesStrangers(t, kennel, a.caPem)
  },
)
