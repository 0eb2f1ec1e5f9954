import 'reflect-metadata'
import crypto, { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import * as x509 from '@peculiar/x509'
import type { Config } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'
import { assertPrivateFile, type DeviceCa } from './ca.ts'
import { generateKeyPair, privateKeyPem } from './crypto-keys.ts'

// Server certificates for the MQTT and API listeners. Production: KENNEL_TLS_CERT/KENNEL_TLS_KEY
// (the key file private, not issued by a development CA — R8), chaining to a certificate of the
// trust bundle toys are given (ca.crt), or toys could not verify the server. Development: issued
// by the CA's serverIssuer (the development root, which a device-CA rollover keeps — R18) for
// localhost, 127.0.0.1 and ::1, cached in <dataDir>/tls/server.pem (key and chain in one file,
// replaced atomically) and reissued when it nears expiry or was issued by another CA.

const VALIDITY_DAYS = 90
const RENEW_BEFORE_MS = 7 * 86_400_000

export async function loadServerTls(config: Config, ca: DeviceCa): Promise<{ cert: string; key: string }> {
  if (config.tlsCert !== undefined || config.tlsKey !== undefined) return loadConfigured(config, ca)
  if (config.env === 'production')
    throw new KennelError('KENNEL_ERR_CONFIG', 'production requires KENNEL_TLS_CERT and KENNEL_TLS_KEY')
  const file = path.join(config.dataDir, 'tls', 'server.pem')
  const cached = fs.existsSync(file) ? await readCached(file, ca) : undefined
  if (cached) return cached
  const issued = await issueDevelopmentServerCertificate(ca, new Date())
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`
  fs.writeFileSync(tmp, `${issued.key.trimEnd()}\n${issued.cert}`, { mode: 0o600 })
  fs.renameSync(tmp, file)
  return issued
}

function loadConfigured(config: Config, ca: DeviceCa): { cert: string; key: string } {
  if (config.tlsCert === undefined || config.tlsKey === undefined)
    throw new KennelError('KENNEL_ERR_CONFIG', 'KENNEL_TLS_CERT and KENNEL_TLS_KEY must be set together')
  assertPrivateFile(config.tlsKey)
  let cert: string
  let key: string
  try {
    cert = fs.readFileSync(config.tlsCert, 'utf8')
    key = fs.readFileSync(config.tlsKey, 'utf8')
  } catch {
    throw new KennelError('KENNEL_ERR_CONFIG', 'cannot read KENNEL_TLS_CERT or KENNEL_TLS_KEY')
  }
  if (config.env === 'production') {
    let leaf: x509.X509Certificate
    try {
      leaf = new x509.X509Certificate(cert)
    } catch {
      throw new KennelError('KENNEL_ERR_CONFIG', `KENNEL_TLS_CERT (${config.tlsCert}) is not a PEM certificate`)
    }
    if (leaf.issuer.includes('kennel development') || /(^|, )OU=development(,|$)/.test(leaf.issuer)) {
      throw new KennelError(
        'KENNEL_ERR_DEVELOPMENT_MATERIAL',
        `KENNEL_TLS_CERT (${config.tlsCert}) was issued by a development CA (R8)`,
      )
    }
    if (!chainsTo(cert, ca.trustedPem)) {
      throw new KennelError(
        'KENNEL_ERR_CONFIG',
        `KENNEL_TLS_CERT (${config.tlsCert}) does not chain to a certificate of KENNEL_CA_CERT or KENNEL_CA_PREVIOUS_CERTS, the ca.crt toys are given: they could not verify the server; issue it under the offline root (R18)`,
      )
    }
  }
  return { cert, key }
}

/** The leaf of `chainPem`, through the chain's own certificates, reaches a certificate of `trustPem`. */
function chainsTo(chainPem: string, trustPem: string): boolean {
  const parse = (pem: string) =>
    (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
      (c) => new crypto.X509Certificate(c),
    )
  const [leaf, ...untrusted] = parse(chainPem)
  const anchors = parse(trustPem)
  const issuerOf = (cert: crypto.X509Certificate, among: crypto.X509Certificate[]) =>
    among.find((c) => cert.checkIssued(c) && cert.verify(c.publicKey))
  let cert = leaf
  for (let depth = 0; cert && depth <= untrusted.length; depth++) {
    if (anchors.some((a) => a.raw.equals(cert!.raw)) || issuerOf(cert, anchors)) return true
    cert = issuerOf(cert, untrusted)
  }
  return false
}

async function readCached(file: string, ca: DeviceCa): Promise<{ cert: string; key: string } | undefined> {
  try {
    const text = fs.readFileSync(file, 'utf8')
    const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(text)?.[0]
    const cert = text.slice(text.indexOf('-----BEGIN CERTIFICATE-----'))
    const leaf = new x509.X509Certificate(cert)
    const fresh = leaf.notAfter.getTime() - Date.now() > RENEW_BEFORE_MS
    const fromServerCa =
      leaf.issuer === ca.serverIssuer.certificate.subject &&
      (await leaf.verify({ publicKey: ca.serverIssuer.certificate.publicKey, signatureOnly: true }))
    return key && fresh && fromServerCa ? { cert, key } : undefined
  } catch {
    return undefined
  }
}

export async function issueDevelopmentServerCertificate(
  ca: DeviceCa,
  now: Date,
): Promise<{ cert: string; key: string }> {
  const keys = await generateKeyPair('P-256')
  const issuer = ca.serverIssuer
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(16).toString('hex'),
    subject: 'CN=localhost, OU=development, O=kennel',
    issuer: issuer.certificate.subjectName,
    notBefore: new Date(now.getTime() - 5 * 60_000),
    notAfter: new Date(Math.min(now.getTime() + VALIDITY_DAYS * 86_400_000, issuer.certificate.notAfter.getTime())),
    publicKey: keys.publicKey,
    signingKey: issuer.signingKey,
    signingAlgorithm: issuer.signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate),
    ],
  })
  const chain = issuer.info.intermediate ? ca.chainPem : ''
  return { cert: `${cert.toString('pem')}\n${chain}`, key: await privateKeyPem(keys.privateKey) }
}
