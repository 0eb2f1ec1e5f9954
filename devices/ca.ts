import 'reflect-metadata'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import * as x509 from '@peculiar/x509'
import type { Config } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'
import { generateKeyPair, importSigningKey, privateKeyPem, sha256Hex, type KeyAlgorithmName } from './crypto-keys.ts'
import type { CaInfo } from './events.ts'

// The device CA (R1, R8, R18). Development: created on first use under <dataDir>/ca/<caId>/
// (key mode 0600), marked as development in its subject and beside it, and rolled over by
// creating a new one and pointing <dataDir>/ca/current at it; every CA under <dataDir>/ca stays
// trusted so that certificates of a rolled-over CA stay valid until they expire. Production:
// KENNEL_CA_CERT (issuing CA first, then intermediates up to the offline root) and KENNEL_CA_KEY,
// plus KENNEL_CA_PREVIOUS_CERTS for rolled-over CAs.

export interface CaIssuer {
  readonly info: CaInfo
  readonly certificate: x509.X509Certificate
  readonly signingKey: CryptoKey
  readonly signingAlgorithm: Algorithm | EcdsaParams
}

export interface DeviceCa {
  /** every CA certificate a device certificate may chain to (current chain + rolled-over CAs), for TLS `ca` */
  readonly trustedPem: string
  /** the issuing CA and its intermediates (no self-signed root), sent with device certificates */
  readonly chainPem: string
  readonly isDevelopment: boolean
  /** kennel generated the issuing key ('created') or loaded it from configured files ('loaded') */
  readonly origin: 'created' | 'loaded'
  /** the CA that signs new certificates and CRLs */
  readonly issuer: CaIssuer
  /** rolled-over CAs whose keys kennel still holds (development), for their CRLs */
  readonly previousIssuers: readonly CaIssuer[]
}

const DEV_MARKER = 'kennel development'
const CA_VALIDITY_DAYS = 3650

export async function loadDeviceCa(config: Config): Promise<DeviceCa> {
  if (config.caCert !== undefined || config.caKey !== undefined) return loadConfiguredCa(config)
  if (config.env === 'production') throw new KennelError('KENNEL_ERR_CONFIG', 'production requires KENNEL_CA_CERT and KENNEL_CA_KEY')
  return loadDevelopmentCa(config, true)
}

/** Create a new development CA and make it the issuing one; the previous ones stay trusted (R18). */
export async function rolloverDevelopmentCa(config: Config): Promise<DeviceCa> {
  if (config.env === 'production' || config.caCert !== undefined) {
    throw new KennelError('KENNEL_ERR_CA', 'roll a configured CA over by issuing a new CA, pointing KENNEL_CA_CERT/KENNEL_CA_KEY at it and adding the old certificate to KENNEL_CA_PREVIOUS_CERTS')
  }
  const dir = caDir(config)
  const caId = await createDevelopmentCa(config)
  writeAtomically(path.join(dir, 'current'), `${caId}\n`)
  return loadDevelopmentCa(config, false)
}

export function caIdOf(cert: x509.X509Certificate): string {
  return sha256Hex(cert.rawData).slice(0, 16)
}

function caDir(config: Config): string {
  return path.join(config.dataDir, 'ca')
}

async function loadDevelopmentCa(config: Config, createIfMissing: boolean): Promise<DeviceCa> {
  const dir = caDir(config)
  const currentFile = path.join(dir, 'current')
  if (!fs.existsSync(currentFile)) {
    if (!createIfMissing) throw new KennelError('KENNEL_ERR_CA', `no development CA in ${dir}`)
    const caId = await createDevelopmentCa(config)
    const tmp = `${currentFile}.${caId}`
    fs.writeFileSync(tmp, `${caId}\n`, { mode: 0o600 })
    try {
      fs.linkSync(tmp, currentFile) // fails if another process created a CA at the same time; theirs wins
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      fs.rmSync(path.join(dir, caId), { recursive: true, force: true })
    } finally {
      fs.rmSync(tmp, { force: true })
    }
  }
  const currentId = fs.readFileSync(currentFile, 'utf8').trim()
  const ids = fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory() && /^[0-9a-f]{16}$/.test(d.name)).map((d) => d.name)
  if (!ids.includes(currentId)) throw new KennelError('KENNEL_ERR_CA', `${currentFile} names a CA that is not in ${dir}`)
  const issuers: CaIssuer[] = []
  for (const id of ids) {
    const marker = JSON.parse(fs.readFileSync(path.join(dir, id, 'ca.json'), 'utf8')) as { environment: string }
    if (marker.environment !== config.env) {
      throw new KennelError('KENNEL_ERR_ENVIRONMENT_MISMATCH', `the development CA in ${path.join(dir, id)} was created for ${marker.environment}, not ${config.env} (R8)`)
    }
    const certPem = fs.readFileSync(path.join(dir, id, 'ca.crt'), 'utf8')
    const keyFile = path.join(dir, id, 'ca.key')
    assertPrivateFile(keyFile)
    issuers.push(await issuerFrom(new x509.X509Certificate(certPem), fs.readFileSync(keyFile, 'utf8'), keyFile, true))
  }
  const issuer = issuers.find((i) => i.info.caId === currentId)!
  const previousIssuers = issuers.filter((i) => i !== issuer)
  return {
    trustedPem: [issuer, ...previousIssuers].map((i) => i.certificate.toString('pem')).join('\n') + '\n',
    chainPem: issuer.certificate.toString('pem') + '\n',
    isDevelopment: true,
    origin: 'created',
    issuer,
    previousIssuers,
  }
}

async function createDevelopmentCa(config: Config): Promise<string> {
  const dir = caDir(config)
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const alg = config.caKeyAlgorithm as KeyAlgorithmName
  const keys = await generateKeyPair(alg)
  const now = new Date()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(16).toString('hex'),
    name: `CN=${DEV_MARKER} device CA ${now.toISOString().replace(/[-:.]/g, '')}, OU=development, O=kennel`,
    notBefore: new Date(now.getTime() - 5 * 60_000),
    notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * 86_400_000),
    keys,
    signingAlgorithm: alg === 'RSA-3072' ? { name: 'RSASSA-PKCS1-v1_5' } : ({ name: 'ECDSA', hash: alg === 'P-384' ? 'SHA-384' : 'SHA-256' } as EcdsaParams),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  const caId = caIdOf(cert)
  const tmp = fs.mkdtempSync(path.join(dir, '.new-'))
  fs.writeFileSync(path.join(tmp, 'ca.key'), await privateKeyPem(keys.privateKey), { mode: 0o600 })
  fs.writeFileSync(path.join(tmp, 'ca.crt'), cert.toString('pem') + '\n', { mode: 0o644 })
  fs.writeFileSync(path.join(tmp, 'ca.json'), JSON.stringify({ development: true, environment: config.env, createdAt: now.toISOString() }) + '\n')
  fs.renameSync(tmp, path.join(dir, caId))
  return caId
}

async function loadConfiguredCa(config: Config): Promise<DeviceCa> {
  if (config.caCert === undefined || config.caKey === undefined) {
    throw new KennelError('KENNEL_ERR_CONFIG', 'KENNEL_CA_CERT and KENNEL_CA_KEY must be set together')
  }
  const production = config.env === 'production'
  const chain = readCertificates(config.caCert, 'KENNEL_CA_CERT')
  const [issuingCert] = chain
  if (!issuingCert) throw new KennelError('KENNEL_ERR_CA', `KENNEL_CA_CERT (${config.caCert}) holds no certificate`)
  const development = isDevelopmentCa(issuingCert, config.caCert)
  if (production && development) {
    throw new KennelError('KENNEL_ERR_DEVELOPMENT_MATERIAL', `KENNEL_CA_CERT (${config.caCert}) is a development CA; production needs its own (R8)`)
  }
  assertPrivateFile(config.caKey)
  const issuer = await issuerFrom(issuingCert, fs.readFileSync(config.caKey, 'utf8'), 'KENNEL_CA_KEY', development)
  const previous = (config.caPreviousCerts ?? []).flatMap((file) => readCertificates(file, 'KENNEL_CA_PREVIOUS_CERTS'))
  if (production) {
    for (const cert of previous) if (isDevelopmentCa(cert, undefined)) throw new KennelError('KENNEL_ERR_DEVELOPMENT_MATERIAL', `KENNEL_CA_PREVIOUS_CERTS holds a development CA (${cert.subject}) (R8)`)
  }
  const pem = (certs: x509.X509Certificate[]) => certs.map((c) => c.toString('pem')).join('\n') + '\n'
  return {
    trustedPem: pem([...chain, ...previous]),
    chainPem: pem(chain.filter((c) => c.subject !== c.issuer)),
    isDevelopment: development,
    origin: 'loaded',
    issuer,
    previousIssuers: [],
  }
}

async function issuerFrom(certificate: x509.X509Certificate, keyPem: string, what: string, development: boolean): Promise<CaIssuer> {
  const basic = certificate.getExtension(x509.BasicConstraintsExtension)
  const usage = certificate.getExtension(x509.KeyUsagesExtension)
  if (!basic?.ca || (usage && !(usage.usages & x509.KeyUsageFlags.keyCertSign))) {
    throw new KennelError('KENNEL_ERR_CA', `the issuing certificate ${certificate.subject} is not a CA certificate (basicConstraints CA:TRUE and keyCertSign)`)
  }
  const { key, publicKeyDer, signing, name } = await importSigningKey(keyPem, what)
  if (!Buffer.from(certificate.publicKey.rawData).equals(publicKeyDer)) {
    throw new KennelError('KENNEL_ERR_CA', `${what} does not belong to the CA certificate ${certificate.subject}`)
  }
  return {
    info: {
      caId: caIdOf(certificate),
      subject: certificate.subject,
      keyAlgorithm: name,
      notBefore: certificate.notBefore.toISOString(),
      notAfter: certificate.notAfter.toISOString(),
      development,
      intermediate: certificate.subject !== certificate.issuer,
    },
    certificate,
    signingKey: key,
    signingAlgorithm: signing,
  }
}

function readCertificates(file: string, variable: string): x509.X509Certificate[] {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    throw new KennelError('KENNEL_ERR_CA', `${variable}: cannot read ${file}`)
  }
  try {
    return x509.PemConverter.decodeWithHeaders(text).filter((p) => p.type === 'CERTIFICATE').map((p) => new x509.X509Certificate(p.rawData))
  } catch {
    throw new KennelError('KENNEL_ERR_CA', `${variable}: ${file} is not a PEM certificate chain`)
  }
}

function isDevelopmentCa(cert: x509.X509Certificate, certFile: string | undefined): boolean {
  if (cert.subject.includes(DEV_MARKER) || /(^|, )OU=development(,|$)/.test(cert.subject)) return true
  return certFile !== undefined && fs.existsSync(path.join(path.dirname(certFile), 'ca.json'))
}

/** R8: a private key readable by group or others is refused before it is read. */
export function assertPrivateFile(file: string): void {
  let mode: number
  try {
    mode = fs.statSync(file).mode
  } catch {
    throw new KennelError('KENNEL_ERR_CA', `cannot read the key file ${file}`)
  }
  if ((mode & 0o077) !== 0) {
    throw new KennelError('KENNEL_ERR_INSECURE_KEY_FILE', `${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`)
  }
}

function writeAtomically(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(tmp, content, { mode: 0o600 })
  fs.renameSync(tmp, file)
}
