import 'reflect-metadata'
import { randomBytes, webcrypto } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as x509 from '@peculiar/x509'
import { loadConfig, type Config } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'
import { loadDeviceCa, type DeviceCa } from '../../devices/ca.ts'
import { generateKeyPair, privateKeyPem, type KeyAlgorithmName } from '../../devices/crypto-keys.ts'
import type { DeviceDeps } from '../../devices/device-store.ts'
import { enrollDevice, type EnrolledDevice } from '../../devices/enroll.ts'

// A throw-away PKI for tests: a development CA and an event store in a temporary data dir, real
// enrolments, and the certificates attackers bring (foreign CA, self-signed, expired, not yet
// valid, another device's name), signed directly with @peculiar/x509.

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface TestPki {
  dir: string
  config: Config
  ca: DeviceCa
  store: EventStore
  deps(overrides?: Partial<DeviceDeps>): DeviceDeps
  /** enrol through the real code path; files written to <dir>/devices/<id>/ */
  enroll(deviceId: string): Promise<EnrolledDevice & { keyFile: string; certFile: string; caFile: string }>
}

export async function createTestPki(t: Teardown, env: Record<string, string> = {}): Promise<TestPki> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-pki-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const config = loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir, ...env })
  const ca = await loadDeviceCa(config)
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  t.teardown(() => store.close())
  const deps = (overrides: Partial<DeviceDeps> = {}): DeviceDeps => ({
    store,
    ca,
    config,
    actor: 'cli:test',
    ...overrides,
  })
  return {
    dir,
    config,
    ca,
    store,
    deps,
    async enroll(deviceId) {
      const enrolled = await enrollDevice(deps(), deviceId)
      return { ...enrolled, ...writeCredentials(path.join(dir, 'devices', deviceId), enrolled) }
    },
  }
}

export function writeCredentials(
  dir: string,
  c: { keyPem: string; certPem: string; caPem: string },
): { keyFile: string; certFile: string; caFile: string } {
  fs.mkdirSync(dir, { recursive: true })
  const keyFile = path.join(dir, 'device.key')
  const certFile = path.join(dir, 'device.crt')
  const caFile = path.join(dir, 'ca.crt')
  fs.writeFileSync(keyFile, c.keyPem, { mode: 0o600 })
  fs.writeFileSync(certFile, c.certPem)
  fs.writeFileSync(caFile, c.caPem)
  return { keyFile, certFile, caFile }
}

export interface Signer {
  /** the issuer's name; absent = self-signed with `keys` */
  certificate?: x509.X509Certificate
  signingKey: CryptoKey
  signingAlgorithm: Algorithm | EcdsaParams
}

export interface CertificateSpec {
  commonName: string
  keys: CryptoKeyPair
  /** absent: self-signed by `keys` */
  signer?: Signer
  notBefore?: Date
  notAfter?: Date
  ca?: boolean
  usage?: 'clientAuth' | 'serverAuth'
  serial?: string
}

const ecdsaSha256 = { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams

/** Sign any certificate, valid or not: the attacker's tool. */
export async function signCertificate(spec: CertificateSpec): Promise<x509.X509Certificate> {
  const now = Date.now()
  const notBefore = spec.notBefore ?? new Date(now - 60_000)
  const notAfter = spec.notAfter ?? new Date(now + 86_400_000)
  const extensions: x509.Extension[] = spec.ca
    ? [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ]
    : [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          spec.usage === 'serverAuth' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension(
          spec.usage === 'serverAuth'
            ? [{ type: 'dns', value: spec.commonName }]
            : [{ type: 'url', value: `urn:kennel:device:${spec.commonName}` }],
        ),
      ]
  const serialNumber = spec.serial ?? `7${randomBytes(15).toString('hex')}`
  if (!spec.signer) {
    return x509.X509CertificateGenerator.createSelfSigned({
      serialNumber,
      name: `CN=${spec.commonName}`,
      notBefore,
      notAfter,
      keys: spec.keys,
      signingAlgorithm: ecdsaSha256,
      extensions,
    })
  }
  return x509.X509CertificateGenerator.create({
    serialNumber,
    subject: `CN=${spec.commonName}`,
    issuer: spec.signer.certificate?.subjectName ?? `CN=${spec.commonName}`,
    notBefore,
    notAfter,
    publicKey: spec.keys.publicKey,
    signingKey: spec.signer.signingKey,
    signingAlgorithm: spec.signer.signingAlgorithm,
    extensions,
  })
}

export interface TestCredentials {
  keyPem: string
  certPem: string
  /** PEM of the CA that signed it (for a foreign CA: that CA; otherwise the kennel CA's trustedPem) */
  caPem: string
}

async function credentials(cert: x509.X509Certificate, keys: CryptoKeyPair, caPem: string): Promise<TestCredentials> {
  return { keyPem: await privateKeyPem(keys.privateKey), certPem: `${cert.toString('pem')}\n`, caPem }
}

/** A CA that is not kennel's, with a certificate for `deviceId` signed by it. */
export async function foreignCaCertificate(deviceId: string): Promise<TestCredentials & { foreignCaPem: string }> {
  const caKeys = await generateKeyPair('P-256')
  const caCert = await signCertificate({ commonName: 'kennel development device CA (forged)', keys: caKeys, ca: true })
  const keys = await generateKeyPair('P-256')
  const cert = await signCertificate({
    commonName: deviceId,
    keys,
    signer: { certificate: caCert, signingKey: caKeys.privateKey, signingAlgorithm: ecdsaSha256 },
  })
  const foreignCaPem = `${caCert.toString('pem')}\n`
  return { ...(await credentials(cert, keys, foreignCaPem)), foreignCaPem }
}

export async function selfSignedCertificate(deviceId: string): Promise<TestCredentials> {
  const keys = await generateKeyPair('P-256')
  const cert = await signCertificate({ commonName: deviceId, keys })
  return credentials(cert, keys, `${cert.toString('pem')}\n`)
}

/** Signed by kennel's own CA key, but outside its validity window (or naming another device). */
export async function caSignedCertificate(
  ca: DeviceCa,
  spec: { commonName: string; notBefore?: Date; notAfter?: Date; usage?: 'clientAuth' | 'serverAuth' },
): Promise<TestCredentials & { serial: string }> {
  const keys = await generateKeyPair('P-256')
  const cert = await signCertificate({ ...spec, keys, signer: ca.issuer })
  return {
    ...(await credentials(cert, keys, ca.trustedPem)),
    serial: cert.serialNumber.toLowerCase().replace(/^0+/, ''),
  }
}

export async function expiredCertificate(
  ca: DeviceCa,
  deviceId: string,
): Promise<TestCredentials & { serial: string }> {
  const day = 86_400_000
  return caSignedCertificate(ca, {
    commonName: deviceId,
    notBefore: new Date(Date.now() - 10 * day),
    notAfter: new Date(Date.now() - day),
  })
}

export async function notYetValidCertificate(
  ca: DeviceCa,
  deviceId: string,
): Promise<TestCredentials & { serial: string }> {
  const day = 86_400_000
  return caSignedCertificate(ca, {
    commonName: deviceId,
    notBefore: new Date(Date.now() + day),
    notAfter: new Date(Date.now() + 10 * day),
  })
}

/** A genuine kennel certificate whose CN is not the client id the attacker will claim. */
export async function wrongCnCertificate(
  ca: DeviceCa,
  commonName: string,
): Promise<TestCredentials & { serial: string }> {
  return caSignedCertificate(ca, { commonName })
}

export interface CsrOptions {
  commonName?: string
  algorithm?: KeyAlgorithmName
  keys?: CryptoKeyPair
}

/** A CSR as a toy makes it: its own key, CN = its id. */
export async function makeCsr(
  options: CsrOptions = {},
): Promise<{ csrPem: string; keyPem: string; keys: CryptoKeyPair }> {
  const keys = options.keys ?? (await generateKeyPair(options.algorithm ?? 'P-256'))
  const rsa = keys.privateKey.algorithm.name.startsWith('RSA')
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: options.commonName === undefined ? undefined : `CN=${options.commonName}`,
      keys,
      signingAlgorithm: rsa ? { name: 'RSASSA-PKCS1-v1_5' } : ecdsaSha256,
    },
    webcrypto as unknown as Crypto,
  )
  return { csrPem: `${csr.toString('pem')}\n`, keyPem: await privateKeyPem(keys.privateKey), keys }
}
