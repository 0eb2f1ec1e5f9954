import 'reflect-metadata'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import * as x509 from '@peculiar/x509'
import type { Config } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'
import { generateKeyPair, importSigningKey, privateKeyPem, sha256Hex, type KeyAlgorithmName } from './crypto-keys.ts'
import type { CaInfo } from './events.ts'

// The device CA (R1, R8, R18) and the CA toys verify the server with. Development: created on
// first use under <dataDir>/ca/<caId>/ (key mode 0600, marked as development in its subject and
// beside it): a root that issues only device CAs and the server certificate, and a device CA under
// it that issues device certificates. A rollover creates a new device CA under the same root and
// points <dataDir>/ca/current at it; every device CA stays trusted so that certificates of a
// rolled-over CA stay valid until they expire, and the server certificate does not change, so no
// toy loses its trust in the server. Production: KENNEL_CA_CERT (issuing CA first, then
// intermediates up to the offline root) and KENNEL_CA_KEY, plus KENNEL_CA_PREVIOUS_CERTS for
// rolled-over CAs. docs/DEPLOYMENT.md has the rollover procedures.

export interface CaIssuer {
  readonly info: CaInfo
  readonly certificate: x509.X509Certificate
  readonly signingKey: CryptoKey
  readonly signingAlgorithm: Algorithm | EcdsaParams
}

export interface DeviceCa {
  /** every CA certificate a device certificate may chain to (current chain + rolled-over CAs), for
   * TLS `ca`; also what a toy is given to trust (ca.crt, renewal), since it always holds the CA
   * that issues the server certificate or its root */
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
  /** the CA that issues a server certificate kennel makes itself (development): one that every
   * ca.crt handed to a toy holds, and that a rollover does not replace (R18) */
  readonly serverIssuer: CaIssuer
}

const DEV_MARKER = 'kennel development'
const CA_VALIDITY_DAYS = 3650
const ROOT_VALIDITY_DAYS = 7300

export async function loadDeviceCa(config: Config): Promise<DeviceCa> {
  if (config.caCert !== undefined || config.caKey !== undefined) return loadConfiguredCa(config)
  if (config.env === 'production')
    throw new KennelError('KENNEL_ERR_CONFIG', 'production requires KENNEL_CA_CERT and KENNEL_CA_KEY')
  return loadDevelopmentCa(config, true)
}

/** Create a new development device CA and make it the issuing one; the previous ones stay
 * trusted and the server certificate's CA stays the same (R18). */
export async function rolloverDevelopmentCa(config: Config): Promise<DeviceCa> {
  if (config.env === 'production' || config.caCert !== undefined) {
    throw new KennelError(
      'KENNEL_ERR_CA',
      'roll a configured CA over by issuing a new CA under the same root, pointing KENNEL_CA_CERT/KENNEL_CA_KEY at it and adding the old certificate to KENNEL_CA_PREVIOUS_CERTS',
    )
  }
  const before = await loadDevelopmentCa(config, true)
  // In a data dir made before roots existed the server's CA is a device CA of path length 0,
  // which cannot issue CAs: the new device CA is self-signed like the earlier ones there.
  const caId = await createDevelopmentCa(
    config,
    before.issuer.info.intermediate ? { kind: 'device', parent: before.serverIssuer } : { kind: 'device' },
  )
  writeAtomically(path.join(caDir(config), 'current'), `${caId}\n`)
  return loadDevelopmentCa(config, false)
}

export function caIdOf(cert: x509.X509Certificate): string {
  return sha256Hex(cert.rawData).slice(0, 16)
}

function caDir(config: Config): string {
  return path.join(config.dataDir, 'ca')
}

/** a CA under <dataDir>/ca, as ca.json describes it */
interface HeldCa {
  issuer: CaIssuer
  /** a development root: issues device CAs and the server certificate, never a device certificate */
  root: boolean
  createdAt: string
}

async function loadDevelopmentCa(config: Config, createIfMissing: boolean): Promise<DeviceCa> {
  const dir = caDir(config)
  const currentFile = path.join(dir, 'current')
  if (!fs.existsSync(currentFile)) {
    if (!createIfMissing) throw new KennelError('KENNEL_ERR_CA', `no development CA in ${dir}`)
    await createFirstDevelopmentCas(config)
  }
  const currentId = fs.readFileSync(currentFile, 'utf8').trim()
  const ids = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && /^[0-9a-f]{16}$/.test(d.name))
    .map((d) => d.name)
  const held: HeldCa[] = []
  for (const id of ids) held.push(await readHeldCa(config, id))
  const current = held.find((h) => h.issuer.info.caId === currentId && !h.root)
  if (!current) throw new KennelError('KENNEL_ERR_CA', `${currentFile} names a device CA that is not in ${dir}`)
  const server = await serverCaOf(held, current, dir)
  const previousIssuers = held.filter((h) => !h.root && h !== current).map((h) => h.issuer)
  const trusted = [current.issuer, ...previousIssuers, ...(server.root ? [server.issuer] : [])]
  return {
    trustedPem: `${trusted.map((i) => i.certificate.toString('pem')).join('\n')}\n`,
    chainPem: `${current.issuer.certificate.toString('pem')}\n`,
    isDevelopment: true,
    origin: 'created',
    issuer: current.issuer,
    previousIssuers,
    serverIssuer: server.issuer,
  }
}

/** The CA of the server certificate must be in every ca.crt a toy was ever given. In a data dir
 * made by this version that is the root, which issued every device CA. Before roots, every
 * development CA was a self-signed device CA and a toy's ca.crt held every CA present at its
 * enrolment; the oldest one is in all of them, also in those of toys enrolled before an old
 * rollover (whose server certificate those toys could no longer verify). */
async function serverCaOf(held: readonly HeldCa[], current: HeldCa, dir: string): Promise<HeldCa> {
  if (current.issuer.info.intermediate) {
    for (const h of held) {
      if (h.root && (await isIssuedBy(current.issuer.certificate, h.issuer.certificate))) return h
    }
    throw new KennelError(
      'KENNEL_ERR_CA',
      `the root that issued the device CA ${current.issuer.info.caId} is not in ${dir}`,
    )
  }
  const deviceCas = held.filter((h) => !h.root)
  return deviceCas.reduce((oldest, h) =>
    h.createdAt < oldest.createdAt || (h.createdAt === oldest.createdAt && h.issuer.info.caId < oldest.issuer.info.caId)
      ? h
      : oldest,
  )
}

async function isIssuedBy(cert: x509.X509Certificate, by: x509.X509Certificate): Promise<boolean> {
  return cert.issuer === by.subject && (await cert.verify({ publicKey: by.publicKey, signatureOnly: true }))
}

async function readHeldCa(config: Config, id: string): Promise<HeldCa> {
  const dir = path.join(caDir(config), id)
  const marker = JSON.parse(fs.readFileSync(path.join(dir, 'ca.json'), 'utf8')) as {
    environment: string
    createdAt: string
    role?: 'root' | 'device'
  }
  if (marker.environment !== config.env) {
    throw new KennelError(
      'KENNEL_ERR_ENVIRONMENT_MISMATCH',
      `the development CA in ${dir} was created for ${marker.environment}, not ${config.env}: set KENNEL_ENV=${marker.environment} if this is a ${marker.environment} deployment, or set KENNEL_DATA_DIR to a data directory of the ${config.env} environment (R8)`,
    )
  }
  const certPem = fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8')
  const keyFile = path.join(dir, 'ca.key')
  assertPrivateFile(keyFile)
  const issuer = await issuerFrom(new x509.X509Certificate(certPem), fs.readFileSync(keyFile, 'utf8'), keyFile, true)
  return { issuer, root: marker.role === 'root', createdAt: marker.createdAt }
}

/** A root and a device CA under it; when another process creates them at the same time, its pair wins. */
async function createFirstDevelopmentCas(config: Config): Promise<void> {
  const dir = caDir(config)
  const rootId = await createDevelopmentCa(config, { kind: 'root' })
  const caId = await createDevelopmentCa(config, { kind: 'device', parent: (await readHeldCa(config, rootId)).issuer })
  const currentFile = path.join(dir, 'current')
  const tmp = `${currentFile}.${caId}`
  fs.writeFileSync(tmp, `${caId}\n`, { mode: 0o600 })
  try {
    fs.linkSync(tmp, currentFile) // fails if another process created its CAs at the same time
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    for (const id of [caId, rootId]) fs.rmSync(path.join(dir, id), { recursive: true, force: true })
  } finally {
    fs.rmSync(tmp, { force: true })
  }
}

type NewCa = { kind: 'root' } | { kind: 'device'; parent?: CaIssuer }

async function createDevelopmentCa(config: Config, spec: NewCa): Promise<string> {
  const dir = caDir(config)
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const alg = config.caKeyAlgorithm as KeyAlgorithmName
  const keys = await generateKeyPair(alg)
  const now = new Date()
  const name = `CN=${DEV_MARKER} ${spec.kind} CA ${now.toISOString().replace(/[-:.]/g, '')}, OU=development, O=kennel`
  const notBefore = new Date(now.getTime() - 5 * 60_000)
  const parent = spec.kind === 'device' ? spec.parent : undefined
  const days = spec.kind === 'root' ? ROOT_VALIDITY_DAYS : CA_VALIDITY_DAYS
  const notAfter = new Date(
    Math.min(now.getTime() + days * 86_400_000, parent?.certificate.notAfter.getTime() ?? Infinity),
  )
  const extensions: x509.Extension[] =
    spec.kind === 'root'
      ? [
          new x509.BasicConstraintsExtension(true, 1, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        ]
      : [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
            true,
          ),
          // OpenSSL refuses a server certificate under a CA whose EKU lacks serverAuth: a device
          // CA's key cannot impersonate the server to toys that trust the root
          ...(parent
            ? [
                new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
                await x509.AuthorityKeyIdentifierExtension.create(parent.certificate),
              ]
            : []),
        ]
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey))
  const signingAlgorithm =
    alg === 'RSA-3072'
      ? { name: 'RSASSA-PKCS1-v1_5' }
      : ({ name: 'ECDSA', hash: alg === 'P-384' ? 'SHA-384' : 'SHA-256' } as EcdsaParams)
  const serialNumber = randomBytes(16).toString('hex')
  const cert = parent
    ? await x509.X509CertificateGenerator.create({
        serialNumber,
        subject: name,
        issuer: parent.certificate.subjectName,
        notBefore,
        notAfter,
        publicKey: keys.publicKey,
        signingKey: parent.signingKey,
        signingAlgorithm: parent.signingAlgorithm,
        extensions,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber,
        name,
        notBefore,
        notAfter,
        keys,
        signingAlgorithm,
        extensions,
      })
  const caId = caIdOf(cert)
  const tmp = fs.mkdtempSync(path.join(dir, '.new-'))
  fs.writeFileSync(path.join(tmp, 'ca.key'), await privateKeyPem(keys.privateKey), { mode: 0o600 })
  fs.writeFileSync(path.join(tmp, 'ca.crt'), `${cert.toString('pem')}\n`, { mode: 0o644 })
  fs.writeFileSync(
    path.join(tmp, 'ca.json'),
    JSON.stringify({ development: true, environment: config.env, role: spec.kind, createdAt: now.toISOString() }) +
      '\n',
  )
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
    throw new KennelError(
      'KENNEL_ERR_DEVELOPMENT_MATERIAL',
      `KENNEL_CA_CERT (${config.caCert}) is a development CA; production needs its own (R8)`,
    )
  }
  assertPrivateFile(config.caKey)
  const issuer = await issuerFrom(issuingCert, fs.readFileSync(config.caKey, 'utf8'), 'KENNEL_CA_KEY', development)
  const previous = (config.caPreviousCerts ?? []).flatMap((file) => readCertificates(file, 'KENNEL_CA_PREVIOUS_CERTS'))
  if (production) {
    for (const cert of previous)
      if (isDevelopmentCa(cert, undefined))
        throw new KennelError(
          'KENNEL_ERR_DEVELOPMENT_MATERIAL',
          `KENNEL_CA_PREVIOUS_CERTS holds a development CA (${cert.subject}) (R8)`,
        )
  }
  const pem = (certs: x509.X509Certificate[]) => `${certs.map((c) => c.toString('pem')).join('\n')}\n`
  return {
    trustedPem: pem([...chain, ...previous]),
    chainPem: pem(chain.filter((c) => c.subject !== c.issuer)),
    isDevelopment: development,
    origin: 'loaded',
    issuer,
    previousIssuers: [],
    serverIssuer: issuer,
  }
}

async function issuerFrom(
  certificate: x509.X509Certificate,
  keyPem: string,
  what: string,
  development: boolean,
): Promise<CaIssuer> {
  const basic = certificate.getExtension(x509.BasicConstraintsExtension)
  const usage = certificate.getExtension(x509.KeyUsagesExtension)
  if (!basic?.ca || (usage && !(usage.usages & x509.KeyUsageFlags.keyCertSign))) {
    throw new KennelError(
      'KENNEL_ERR_CA',
      `the issuing certificate ${certificate.subject} is not a CA certificate (basicConstraints CA:TRUE and keyCertSign)`,
    )
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
    return x509.PemConverter.decodeWithHeaders(text)
      .filter((p) => p.type === 'CERTIFICATE')
      .map((p) => new x509.X509Certificate(p.rawData))
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
    throw new KennelError(
      'KENNEL_ERR_INSECURE_KEY_FILE',
      `${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
    )
  }
}

function writeAtomically(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(tmp, content, { mode: 0o600 })
  fs.renameSync(tmp, file)
}
