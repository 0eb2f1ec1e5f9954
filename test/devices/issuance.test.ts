import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { buildCrl } from '../../devices/crl.ts'
import { enrollDevice, issueFromCsr } from '../../devices/enroll.ts'
import { renewCertificate } from '../../devices/renew.ts'
import { revokeCertificate, revokeDevice } from '../../devices/revoke.ts'
import { readRegistry, checkCertificate } from '../../devices/registry.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'
import { createTestPki, makeCsr, writeCredentials } from '../helpers/pki.ts'

function openssl(args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8', input })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

async function snapshot(store: EventStore): Promise<string> {
  return JSON.stringify(await store.readAll())
}

t.test(
  'an enrolled device certificate passes openssl verify and carries exactly the required fields (R1)',
  async (t) => {
    const pki = await createTestPki(t)
    const toy = await pki.enroll('toy-1')
    const verify = openssl(['verify', '-CAfile', toy.caFile, toy.certFile])
    t.equal(verify.status, 0, verify.out)
    const text = openssl(['x509', '-in', toy.certFile, '-noout', '-text']).out
    t.match(text, /Subject: CN ?= ?toy-1\n/)
    t.match(text, /URI:urn:kennel:device:toy-1/)
    t.match(text, /X509v3 Extended Key Usage: *\n\s*TLS Web Client Authentication\n/)
    t.match(text, /X509v3 Key Usage: critical\n\s*Digital Signature\n/)
    t.match(text, /CA:FALSE/)
    t.match(text, /ecdsa-with-SHA256/)
    t.equal(fs.statSync(toy.keyFile).mode & 0o777, 0o600)
    const modulus = openssl(['pkey', '-in', toy.keyFile, '-pubout']).out
    t.equal(
      modulus,
      openssl(['x509', '-in', toy.certFile, '-noout', '-pubkey']).out,
      'key and certificate belong together',
    )
  },
)

t.test(
  'serials are random, positive, 128-bit; validity is the configured days with at most 5 minutes backdating',
  async (t) => {
    const pki = await createTestPki(t, { KENNEL_CERT_VALIDITY_DAYS: '30' })
    const now = new Date('2031-06-01T12:00:00Z')
    const serials = new Set<string>()
    for (const id of ['toy-a', 'toy-b', 'toy-c']) {
      const { csrPem } = await makeCsr({ commonName: id })
      const issued = await issueFromCsr(pki.deps({ now }), id, csrPem)
      serials.add(issued.serial)
      t.match(issued.serial, /^[1-9a-f][0-9a-f]{24,31}$/)
      const x = new crypto.X509Certificate(issued.certPem)
      t.equal(Date.parse(x.validFrom), now.getTime() - 5 * 60_000, 'notBefore = now - 5 min')
      t.equal(Date.parse(x.validTo), now.getTime() + 30 * 86_400_000, 'notAfter = now + 30 days')
      t.equal(x.serialNumber.toLowerCase().replace(/^0+/, ''), issued.serial)
    }
    t.equal(serials.size, 3)
  },
)

t.test('a CSR keeps the key on the toy: the certificate certifies the CSR key', async (t) => {
  const pki = await createTestPki(t)
  for (const [id, algorithm] of [
    ['toy-p256', 'P-256'],
    ['toy-p384', 'P-384'],
    ['toy-rsa', 'RSA-3072'],
  ] as const) {
    const { csrPem, keys } = await makeCsr({ commonName: id, algorithm })
    const { certPem } = await issueFromCsr(pki.deps(), id, csrPem)
    const spki = Buffer.from(await crypto.webcrypto.subtle.exportKey('spki', keys.publicKey))
    t.ok(
      new crypto.X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' }).equals(spki),
      `${algorithm} key certified`,
    )
  }
  const { csrPem } = await makeCsr() // no CN at all: fine, kennel names it
  t.ok((await issueFromCsr(pki.deps(), 'toy-nocn', csrPem)).serial)
})

t.test('a revoked certificate is rejected by openssl with the exported CRL (R3)', async (t) => {
  const pki = await createTestPki(t)
  const good = await pki.enroll('toy-good')
  const bad = await pki.enroll('toy-bad')
  const leaked = await pki.enroll('toy-leaked')
  await revokeDevice(pki.deps(), 'toy-bad', 'stolen')
  await revokeCertificate(pki.deps(), leaked.serial.toUpperCase().replace(/(..)(?=.)/g, '$1:'), 'key leaked')
  const crlFile = path.join(pki.dir, 'crl.pem')
  fs.writeFileSync(crlFile, await buildCrl(pki.ca, await readRegistry(pki.store), new Date()))
  t.match(fs.readFileSync(crlFile, 'utf8'), /^-----BEGIN X509 CRL-----/)
  const crlText = openssl(['crl', '-in', crlFile, '-noout', '-text', '-CAfile', good.caFile]).out
  t.match(crlText, /verify OK/)
  t.match(crlText, new RegExp(bad.serial.toUpperCase()))
  t.equal(
    openssl(['verify', '-crl_check', '-CAfile', good.caFile, '-CRLfile', crlFile, good.certFile]).status,
    0,
    'the good toy still verifies',
  )
  for (const toy of [bad, leaked]) {
    const r = openssl(['verify', '-crl_check', '-CAfile', toy.caFile, '-CRLfile', crlFile, toy.certFile])
    t.not(r.status, 0)
    t.match(r.out, /certificate revoked/)
  }
})

t.test(
  'renewal: the new certificate verifies; the old one stays valid for the grace period, then is superseded (R18)',
  async (t) => {
    const pki = await createTestPki(t, { KENNEL_RENEWAL_GRACE_HOURS: '2' })
    const toy = await pki.enroll('toy-1')
    const { csrPem } = await makeCsr({ commonName: 'toy-1' })
    const now = new Date()
    const renewed = await renewCertificate(
      pki.deps({ now, actor: 'device:toy-1' }),
      'toy-1',
      toy.serial.toUpperCase(),
      csrPem,
    )
    const files = writeCredentials(path.join(pki.dir, 'renewed'), {
      keyPem: '',
      certPem: renewed.certPem,
      caPem: pki.ca.trustedPem,
    })
    t.equal(openssl(['verify', '-CAfile', files.caFile, files.certFile]).status, 0)
    const docs = await readRegistry(pki.store)
    t.same(checkCertificate(docs, 'toy-1', toy.serial, new Date(now.getTime() + 3_600_000)), {
      ok: true,
      deviceId: 'toy-1',
    })
    t.same(checkCertificate(docs, 'toy-1', toy.serial, new Date(now.getTime() + 2 * 3_600_000)), {
      ok: false,
      reason: 'superseded',
    })
    t.same(checkCertificate(docs, 'toy-1', renewed.serial, new Date(now.getTime() + 2 * 3_600_000)), {
      ok: true,
      deviceId: 'toy-1',
    })
    const last = (await pki.store.readStream('device-toy-1')).at(-1)!
    t.equal(last.type, 'CertificateRenewed')
    t.same(last.metadata, { actor: 'device:toy-1', credential: `cert:${toy.serial}` })
    const before = await snapshot(pki.store)
    await t.rejects(
      renewCertificate(pki.deps(), 'toy-1', toy.serial, (await makeCsr()).csrPem),
      { code: 'KENNEL_ERR_CERT_INVALID' },
      'the superseded certificate cannot renew again',
    )
    t.equal(await snapshot(pki.store), before)
  },
)

t.test('every refusal has its own code and leaves the event store unchanged', async (t) => {
  const pki = await createTestPki(t)
  await pki.enroll('toy-1')
  await pki.enroll('toy-gone')
  await revokeDevice(pki.deps(), 'toy-gone', 'lost')
  const good = await makeCsr({ commonName: 'toy-2' })
  const der = Buffer.from(good.csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64')
  const pem = (buf: Buffer) =>
    `-----BEGIN CERTIFICATE REQUEST-----\n${buf.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`
  const badSignature = Buffer.from(der)
  badSignature[badSignature.length - 3]! ^= 0x01
  const forgedSubject = Buffer.from(der.toString('latin1').replace('toy-2', 'toy-3'), 'latin1') // signed for toy-2, claims toy-3
  const weak = (args: string[]) => {
    const dir = fs.mkdtempSync(path.join(pki.dir, 'csr-'))
    const r = spawnSync(
      'openssl',
      [
        'req',
        '-new',
        '-nodes',
        '-subj',
        '/CN=toy-2',
        '-keyout',
        path.join(dir, 'k.pem'),
        '-out',
        path.join(dir, 'c.pem'),
        ...args,
      ],
      { encoding: 'utf8' },
    )
    if (r.status !== 0) throw new Error(r.stderr)
    return fs.readFileSync(path.join(dir, 'c.pem'), 'utf8')
  }
  const certInsteadOfCsr = fs.readFileSync(path.join(pki.dir, 'devices', 'toy-1', 'device.crt'), 'utf8')
  const cases: Array<[string, () => Promise<unknown>, string]> = [
    [
      'duplicate id',
      async () => issueFromCsr(pki.deps(), 'toy-1', (await makeCsr({ commonName: 'toy-1' })).csrPem),
      'KENNEL_ERR_DEVICE_EXISTS',
    ],
    ['duplicate id (enroll)', () => enrollDevice(pki.deps(), 'toy-1'), 'KENNEL_ERR_DEVICE_EXISTS'],
    ['revoked id re-enrolled', () => enrollDevice(pki.deps(), 'toy-gone'), 'KENNEL_ERR_DEVICE_REVOKED'],
    ['empty text', () => issueFromCsr(pki.deps(), 'toy-2', ''), 'KENNEL_ERR_CSR_INVALID'],
    ['garbage', () => issueFromCsr(pki.deps(), 'toy-2', 'hello'), 'KENNEL_ERR_CSR_INVALID'],
    [
      'truncated',
      () => issueFromCsr(pki.deps(), 'toy-2', pem(der.subarray(0, der.length - 20))),
      'KENNEL_ERR_CSR_INVALID',
    ],
    [
      'a certificate instead of a CSR',
      () => issueFromCsr(pki.deps(), 'toy-2', certInsteadOfCsr),
      'KENNEL_ERR_CSR_INVALID',
    ],
    ['huge', () => issueFromCsr(pki.deps(), 'toy-2', 'A'.repeat(100_000)), 'KENNEL_ERR_CSR_INVALID'],
    ['signature bit flipped', () => issueFromCsr(pki.deps(), 'toy-2', pem(badSignature)), 'KENNEL_ERR_CSR_SIGNATURE'],
    [
      'subject forged after signing',
      () => issueFromCsr(pki.deps(), 'toy-3', pem(forgedSubject)),
      'KENNEL_ERR_CSR_SIGNATURE',
    ],
    ['CN names another device', () => issueFromCsr(pki.deps(), 'toy-9', good.csrPem), 'KENNEL_ERR_CSR_SUBJECT'],
    [
      'RSA-1024',
      async () => issueFromCsr(pki.deps(), 'toy-2', weak(['-newkey', 'rsa:1024'])),
      'KENNEL_ERR_CSR_WEAK_KEY',
    ],
    [
      'P-192',
      async () =>
        issueFromCsr(pki.deps(), 'toy-2', weak(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime192v1'])),
      'KENNEL_ERR_CSR_WEAK_KEY',
    ],
    [
      'secp256k1 (unknown curve)',
      async () => issueFromCsr(pki.deps(), 'toy-2', weak(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'])),
      'KENNEL_ERR_CSR_ALGORITHM',
    ],
    [
      'Ed25519 (not accepted)',
      async () => issueFromCsr(pki.deps(), 'toy-2', weak(['-newkey', 'ed25519'])),
      'KENNEL_ERR_CSR_ALGORITHM',
    ],
    [
      'SHA-1 signature',
      async () => issueFromCsr(pki.deps(), 'toy-2', weak(['-newkey', 'rsa:2048', '-sha1'])),
      'KENNEL_ERR_CSR_ALGORITHM',
    ],
    [
      'renewal of an unknown device',
      async () => renewCertificate(pki.deps(), 'toy-404', 'ab', good.csrPem),
      'KENNEL_ERR_DEVICE_UNKNOWN',
    ],
    [
      'renewal with a serial not of this device',
      async () => renewCertificate(pki.deps(), 'toy-1', 'ab', good.csrPem),
      'KENNEL_ERR_CERT_UNKNOWN',
    ],
    [
      'renewal with a malformed serial',
      async () => renewCertificate(pki.deps(), 'toy-1', 'xyz', good.csrPem),
      'KENNEL_ERR_VALIDATION',
    ],
    ['revocation without a reason', () => revokeDevice(pki.deps(), 'toy-1', '  '), 'KENNEL_ERR_VALIDATION'],
    ['revocation of an unknown device', () => revokeDevice(pki.deps(), 'toy-404', 'x'), 'KENNEL_ERR_DEVICE_UNKNOWN'],
    ['revocation of an unknown serial', () => revokeCertificate(pki.deps(), 'abcdef', 'x'), 'KENNEL_ERR_CERT_UNKNOWN'],
    ['second revocation', () => revokeDevice(pki.deps(), 'toy-gone', 'again'), 'KENNEL_ERR_DEVICE_REVOKED'],
  ]
  for (const id of [
    '../x',
    "a'; drop table events; --",
    'ab',
    'A-Upper',
    '-lead',
    'trail-',
    'a'.repeat(65),
    'toy_1',
    'toy.1',
    'toy 1',
    'tøy-1',
    'toy-1\n',
    'toy%2f1',
    '',
  ]) {
    cases.push([
      `bad id ${JSON.stringify(id)}`,
      () => issueFromCsr(pki.deps(), id, good.csrPem),
      'KENNEL_ERR_DEVICE_ID_INVALID',
    ])
    cases.push([
      `bad id ${JSON.stringify(id)} (enroll)`,
      () => enrollDevice(pki.deps(), id),
      'KENNEL_ERR_DEVICE_ID_INVALID',
    ])
  }
  for (const [name, attempt, code] of cases) {
    const before = await snapshot(pki.store)
    await t.rejects(attempt(), { code }, `${name}: ${code}`)
    t.equal(await snapshot(pki.store), before, `${name}: store unchanged`)
  }
})
