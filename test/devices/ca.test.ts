import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { loadDeviceCa, rolloverDevelopmentCa } from '../../devices/ca.ts'
import { generateKeyPair, privateKeyPem } from '../../devices/crypto-keys.ts'
import { enrollDevice, issueFromCsr } from '../../devices/enroll.ts'
import { loadServerTls } from '../../devices/server-tls.ts'
import { loadConfig } from '../../infra/config.ts'
import { createTestPki, makeCsr, signCertificate, writeCredentials } from '../helpers/pki.ts'

const ecdsa = { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams

function tmp(t: { teardown(fn: () => unknown): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-ca-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

function verify(args: string[]): number | null {
  return spawnSync('openssl', ['verify', ...args], { encoding: 'utf8' }).status
}

/** A production-like environment: every required variable set, CA files supplied by the test. */
function productionEnv(
  dir: string,
  ca: { cert: string; key: string },
  tlsFiles?: { cert: string; key: string },
): Record<string, string> {
  return {
    KENNEL_ENV: 'production',
    KENNEL_DATA_DIR: dir,
    KENNEL_CA_CERT: ca.cert,
    KENNEL_CA_KEY: ca.key,
    KENNEL_TLS_CERT: tlsFiles?.cert ?? path.join(dir, 'none.crt'),
    KENNEL_TLS_KEY: tlsFiles?.key ?? path.join(dir, 'none.key'),
    KENNEL_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'),
    KENNEL_SECURITY_CONTACT: 'mailto:sec@toys.example',
    KENNEL_SMTP_URL: 'smtps://kennel:secret@mail.toys.example',
    KENNEL_MAIL_FROM: 'kennel <no-reply@toys.example>',
  }
}

async function offlineRootAndIntermediate(dir: string) {
  const rootKeys = await generateKeyPair('P-384')
  const root = await signCertificate({
    commonName: 'Toy Co Root CA',
    keys: rootKeys,
    ca: true,
    notAfter: new Date(Date.now() + 3650 * 86_400_000),
  })
  const interKeys = await generateKeyPair('P-256')
  const inter = await signCertificate({
    commonName: 'Toy Co Device CA 1',
    keys: interKeys,
    ca: true,
    signer: {
      certificate: root,
      signingKey: rootKeys.privateKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams,
    },
    notAfter: new Date(Date.now() + 1000 * 86_400_000),
  })
  const cert = path.join(dir, 'device-ca.crt')
  const key = path.join(dir, 'device-ca.key')
  fs.writeFileSync(cert, `${inter.toString('pem')}\n${root.toString('pem')}\n`)
  fs.writeFileSync(key, await privateKeyPem(interKeys.privateKey), { mode: 0o600 })
  return {
    cert,
    key,
    rootPem: `${root.toString('pem')}\n`,
    rootSigner: {
      certificate: root,
      signingKey: rootKeys.privateKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams,
    },
  }
}

t.test('the development CA is created once, P-256 by default, key mode 0600, marked development', async (t) => {
  const pki = await createTestPki(t)
  t.equal(pki.ca.isDevelopment, true)
  t.equal(pki.ca.issuer.info.keyAlgorithm, 'P-256')
  const dir = path.join(pki.dir, 'ca', pki.ca.issuer.info.caId)
  t.equal(fs.statSync(path.join(dir, 'ca.key')).mode & 0o777, 0o600)
  t.match(pki.ca.issuer.info.subject, /OU=development/)
  const again = await loadDeviceCa(pki.config)
  t.equal(again.issuer.info.caId, pki.ca.issuer.info.caId, 'the same CA on the next start')
  t.notOk(JSON.stringify(pki.ca).includes('PRIVATE'), 'no key material in a JSON dump')
  t.notOk(JSON.stringify(pki.ca.issuer.signingKey).length > 200)
  t.equal(pki.ca.issuer.signingKey.extractable, false, 'the signing key cannot be exported')
})

t.test('two processes starting at once end up with one root and one device CA', async (t) => {
  const dir = tmp(t)
  const config = loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir })
  const [a, b] = await Promise.all([loadDeviceCa(config), loadDeviceCa(config)])
  t.equal(a.issuer.info.caId, b.issuer.info.caId)
  t.equal(a.serverIssuer.info.caId, b.serverIssuer.info.caId)
  const roles = fs
    .readdirSync(path.join(dir, 'ca'))
    .filter((f) => /^[0-9a-f]{16}$/.test(f))
    .map((id) => JSON.parse(fs.readFileSync(path.join(dir, 'ca', id, 'ca.json'), 'utf8')).role as string)
  t.same(roles.sort(), ['device', 'root'])
})

t.test(
  'the development device CA is issued by a root that toys trust and that issues the server certificate (R18)',
  async (t) => {
    const pki = await createTestPki(t)
    const { issuer, serverIssuer } = pki.ca
    t.equal(issuer.info.intermediate, true, 'the device CA is an intermediate')
    t.equal(serverIssuer.info.intermediate, false, 'under a self-signed root')
    t.match(serverIssuer.info.subject, /^CN=kennel development root CA .*OU=development/)
    t.not(serverIssuer.info.caId, issuer.info.caId)
    t.equal(issuer.certificate.issuer, serverIssuer.certificate.subject)
    t.equal(fs.statSync(path.join(pki.dir, 'ca', serverIssuer.info.caId, 'ca.key')).mode & 0o777, 0o600)
    const toy = await pki.enroll('toy-1')
    t.equal((toy.certPem.match(/BEGIN CERTIFICATE/g) ?? []).length, 2, 'the device certificate is sent with its CA')
    t.ok(toy.caPem.includes(serverIssuer.certificate.toString('pem')), "the root is in the toy's ca.crt")
    t.equal(pki.ca.previousIssuers.length, 0, 'the root issues no device certificate and has no CRL')
    const rootFile = path.join(pki.dir, 'root.crt')
    fs.writeFileSync(rootFile, serverIssuer.certificate.toString('pem'))
    t.equal(
      verify(['-CAfile', rootFile, '-untrusted', toy.certFile, toy.certFile]),
      0,
      'the device certificate chains to the root',
    )
  },
)

t.test("a device CA's key cannot impersonate the server to a toy (EKU of the device CA)", async (t) => {
  const pki = await createTestPki(t)
  const toy = await pki.enroll('toy-1')
  const keys = await generateKeyPair('P-256')
  const forged = await signCertificate({ commonName: 'localhost', keys, usage: 'serverAuth', signer: pki.ca.issuer })
  const srv = tls.createServer(
    { cert: `${forged.toString('pem')}\n${pki.ca.chainPem}`, key: await privateKeyPem(keys.privateKey) },
    (s) => s.end('impostor'),
  )
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => srv.close())
  const port = (srv.address() as { port: number }).port
  const outcome = await new Promise<string>((resolve) => {
    const c = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: toy.caPem,
      key: toy.keyPem,
      cert: toy.certPem,
    })
    c.once('secureConnect', () => (c.destroy(), resolve('trusted')))
    c.once('error', (err: NodeJS.ErrnoException) => resolve(String(err.code)))
  })
  t.equal(outcome, 'INVALID_PURPOSE', 'the toy refuses a server certificate issued by the device CA')
})

for (const alg of ['P-384', 'RSA-3072'] as const) {
  t.test(`a ${alg} development CA issues certificates openssl accepts (R18)`, async (t) => {
    const pki = await createTestPki(t, { KENNEL_CA_KEY_ALGORITHM: alg })
    t.equal(pki.ca.issuer.info.keyAlgorithm, alg)
    const toy = await pki.enroll('toy-1')
    t.equal(verify(['-CAfile', toy.caFile, toy.certFile]), 0)
  })
}

t.test('CA rollover: the new CA issues, certificates of the old one stay trusted (R18)', async (t) => {
  const pki = await createTestPki(t)
  const old = await pki.enroll('toy-old')
  const next = await rolloverDevelopmentCa(pki.config)
  t.not(next.issuer.info.caId, pki.ca.issuer.info.caId)
  t.equal(next.previousIssuers.length, 1)
  const { csrPem } = await makeCsr({ commonName: 'toy-new' })
  const issued = await issueFromCsr(pki.deps({ ca: next }), 'toy-new', csrPem)
  const files = writeCredentials(path.join(pki.dir, 'new'), {
    keyPem: '',
    certPem: issued.certPem,
    caPem: next.trustedPem,
  })
  t.equal(verify(['-CAfile', files.caFile, files.certFile]), 0, 'new certificate verifies')
  t.equal(verify(['-CAfile', files.caFile, old.certFile]), 0, 'old certificate still verifies against the trusted set')
  t.equal(
    new crypto.X509Certificate(issued.certPem).issuer.includes(next.issuer.info.subject.split(',')[0]!.slice(3)),
    true,
  )
  t.same(
    (await pki.store.readAll({ filter: { streamPrefixes: ['ca-'] } })).map((e) => e.type),
    ['CaCreated', 'CaCreated'],
  )
})

t.test('an intermediate issuing CA under an offline root: the chain is sent with device certificates', async (t) => {
  const dir = tmp(t)
  const files = await offlineRootAndIntermediate(dir)
  const config = loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_CA_CERT: files.cert,
    KENNEL_CA_KEY: files.key,
  })
  const ca = await loadDeviceCa(config)
  t.equal(ca.isDevelopment, false)
  t.equal(ca.issuer.info.intermediate, true)
  t.notMatch(ca.chainPem, files.rootPem.trim().split('\n')[1]!, 'the root is not sent')
  const pki = await createTestPki(t)
  const { csrPem } = await makeCsr({ commonName: 'toy-1' })
  const issued = await issueFromCsr({ ...pki.deps(), ca }, 'toy-1', csrPem)
  t.equal((issued.certPem.match(/BEGIN CERTIFICATE/g) ?? []).length, 2, 'leaf + intermediate')
  const rootFile = path.join(dir, 'root.crt')
  const leafFile = path.join(dir, 'leaf.crt')
  fs.writeFileSync(rootFile, files.rootPem)
  fs.writeFileSync(leafFile, issued.certPem)
  t.equal(
    verify(['-CAfile', rootFile, '-untrusted', leafFile, leafFile]),
    0,
    'leaf verifies against the root alone with the sent chain',
  )
})

t.test('production refuses a development CA, a readable key file, and missing files (R8)', async (t) => {
  const pki = await createTestPki(t)
  const devDir = path.join(pki.dir, 'ca', pki.ca.issuer.info.caId)
  const dir = tmp(t)
  const prodDev = loadConfig(
    productionEnv(dir, { cert: path.join(devDir, 'ca.crt'), key: path.join(devDir, 'ca.key') }),
  )
  await t.rejects(loadDeviceCa(prodDev), { code: 'KENNEL_ERR_DEVELOPMENT_MATERIAL' }, 'development CA refused')
  const copied = path.join(dir, 'copied.crt')
  fs.copyFileSync(path.join(devDir, 'ca.crt'), copied)
  await t.rejects(
    loadDeviceCa(loadConfig(productionEnv(dir, { cert: copied, key: path.join(devDir, 'ca.key') }))),
    { code: 'KENNEL_ERR_DEVELOPMENT_MATERIAL' },
    'a copied development CA is still refused',
  )

  const files = await offlineRootAndIntermediate(dir)
  t.equal((await loadDeviceCa(loadConfig(productionEnv(dir, files)))).isDevelopment, false, 'a real CA loads')
  fs.chmodSync(files.key, 0o644)
  await t.rejects(
    loadDeviceCa(loadConfig(productionEnv(dir, files))),
    { code: 'KENNEL_ERR_INSECURE_KEY_FILE', message: /chmod 600/ },
    'mode 0644 refused',
  )
  fs.chmodSync(files.key, 0o640)
  await t.rejects(
    loadDeviceCa(loadConfig(productionEnv(dir, files))),
    { code: 'KENNEL_ERR_INSECURE_KEY_FILE' },
    'mode 0640 refused',
  )
  fs.chmodSync(files.key, 0o600)
  const otherKey = path.join(dir, 'other.key')
  fs.writeFileSync(otherKey, await privateKeyPem((await generateKeyPair('P-256')).privateKey), { mode: 0o600 })
  await t.rejects(
    loadDeviceCa(loadConfig(productionEnv(dir, { cert: files.cert, key: otherKey }))),
    { code: 'KENNEL_ERR_CA', message: /does not belong/ },
    'a key of another CA refused',
  )
  await t.rejects(
    loadDeviceCa(loadConfig(productionEnv(dir, { cert: path.join(dir, 'missing.crt'), key: files.key }))),
    { code: 'KENNEL_ERR_CA' },
  )
  const leafKeys = await generateKeyPair('P-256')
  const leaf = await signCertificate({ commonName: 'not-a-ca', keys: leafKeys })
  fs.writeFileSync(path.join(dir, 'leaf.crt'), leaf.toString('pem'))
  fs.writeFileSync(path.join(dir, 'leaf.key'), await privateKeyPem(leafKeys.privateKey), { mode: 0o600 })
  await t.rejects(
    loadDeviceCa(loadConfig(productionEnv(dir, { cert: path.join(dir, 'leaf.crt'), key: path.join(dir, 'leaf.key') }))),
    { code: 'KENNEL_ERR_CA', message: /not a CA/ },
  )
  t.notOk(fs.existsSync(path.join(dir, 'ca')), 'production never creates a CA')
})

t.test(
  'development server certificate: issued by the dev CA for localhost, 127.0.0.1 and ::1, serverAuth, cached',
  async (t) => {
    const pki = await createTestPki(t)
    const server = await loadServerTls(pki.config, pki.ca)
    const x = new crypto.X509Certificate(server.cert)
    t.equal(x.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')
    t.ok(x.keyUsage?.includes('1.3.6.1.5.5.7.3.1'), 'EKU serverAuth')
    t.ok(
      x.checkIssued(new crypto.X509Certificate(pki.ca.serverIssuer.certificate.toString('pem'))),
      'issued by the root',
    )
    t.equal(fs.statSync(path.join(pki.dir, 'tls', 'server.pem')).mode & 0o777, 0o600)
    t.same(await loadServerTls(pki.config, pki.ca), server, 'cached')
    const next = await rolloverDevelopmentCa(pki.config)
    t.same(
      await loadServerTls(pki.config, next),
      server,
      'kept across a device-CA rollover: toys enrolled before still verify it',
    )

    // a real mutual-TLS handshake with an enrolled toy
    const toy = await enrollDevice(pki.deps({ ca: next }), 'toy-1')
    const fresh = await loadServerTls(pki.config, next)
    const srv = tls.createServer({ ...fresh, ca: next.trustedPem, requestCert: true, rejectUnauthorized: true }, (s) =>
      s.end(String(s.getPeerCertificate().subject.CN)),
    )
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
    t.teardown(() => srv.close())
    const port = (srv.address() as { port: number }).port
    const cn = await new Promise<string>((resolve, reject) => {
      const c = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ca: toy.caPem,
        key: toy.keyPem,
        cert: toy.certPem,
      })
      c.once('data', (d: Buffer) => resolve(String(d)))
      c.on('error', reject)
    })
    t.equal(cn, 'toy-1', 'the toy authenticates with its certificate and verifies the server')
  },
)

t.test(
  'production server certificates come from configured files; a readable key or a dev-CA certificate is refused',
  async (t) => {
    const pki = await createTestPki(t)
    const dir = tmp(t)
    const ca = await offlineRootAndIntermediate(dir)
    const devServer = await loadServerTls(pki.config, pki.ca)
    const tlsFiles = { cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') }
    fs.writeFileSync(tlsFiles.cert, devServer.cert)
    fs.writeFileSync(tlsFiles.key, devServer.key, { mode: 0o600 })
    const prodCa = await loadDeviceCa(loadConfig(productionEnv(dir, ca, tlsFiles)))
    await t.rejects(loadServerTls(loadConfig(productionEnv(dir, ca, tlsFiles)), prodCa), {
      code: 'KENNEL_ERR_DEVELOPMENT_MATERIAL',
    })
    const keys = await generateKeyPair('P-256')
    const elsewhere = await signCertificate({
      commonName: 'mqtt.toys.example',
      keys,
      usage: 'serverAuth',
      signer: { signingKey: keys.privateKey, signingAlgorithm: ecdsa },
    })
    fs.writeFileSync(tlsFiles.cert, elsewhere.toString('pem'))
    fs.writeFileSync(tlsFiles.key, await privateKeyPem(keys.privateKey), { mode: 0o600 })
    await t.rejects(
      loadServerTls(loadConfig(productionEnv(dir, ca, tlsFiles)), prodCa),
      {
        code: 'KENNEL_ERR_CONFIG',
        message:
          /does not chain to a certificate of KENNEL_CA_CERT or KENNEL_CA_PREVIOUS_CERTS, the ca\.crt toys are given/,
      },
      'a server certificate toys could not verify is refused (R18)',
    )
    const real = await signCertificate({
      commonName: 'mqtt.toys.example',
      keys,
      usage: 'serverAuth',
      signer: ca.rootSigner,
    })
    fs.writeFileSync(tlsFiles.cert, real.toString('pem'))
    t.match(
      await loadServerTls(loadConfig(productionEnv(dir, ca, tlsFiles)), prodCa),
      { cert: /BEGIN CERTIFICATE/, key: /BEGIN PRIVATE KEY/ },
      'issued under the offline root',
    )
    fs.chmodSync(tlsFiles.key, 0o644)
    await t.rejects(loadServerTls(loadConfig(productionEnv(dir, ca, tlsFiles)), prodCa), {
      code: 'KENNEL_ERR_INSECURE_KEY_FILE',
    })
  },
)
