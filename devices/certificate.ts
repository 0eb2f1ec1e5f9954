import 'reflect-metadata'
import { createPublicKey, type KeyObject } from 'node:crypto'
import * as x509 from '@peculiar/x509'
import { KennelError } from '../infra/errors.ts'
import type { CaIssuer } from './ca.ts'
import { sha256Hex } from './crypto-keys.ts'
import type { IssuedCertificate } from './device.ts'
import { normalizeSerial } from './registry.ts'

// Device certificates from CSRs (R1): the key stays on the toy; kennel checks the request and
// signs a certificate whose only names are the device id.

const MAX_CSR_BYTES = 16 * 1024
const BACKDATE_MS = 5 * 60_000 // clock skew on toys without a battery-backed clock
const ACCEPTED_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1'])
const WEAK_CURVES = new Set([
  'prime192v1',
  'secp192k1',
  'secp224r1',
  'secp224k1',
  'prime239v1',
  'secp160r1',
  'secp160k1',
])

export interface CheckedCsr {
  publicKey: x509.PublicKey
  /** SHA-256 of the SubjectPublicKeyInfo DER */
  publicKeyId: string
}

/** Parse and check a CSR: readable PKCS#10, a strong key of a known algorithm, a valid
 * signature by that key (proof of possession), and a subject naming no one but the device. */
export async function checkCsr(csrPem: string, deviceId: string): Promise<CheckedCsr> {
  if (typeof csrPem !== 'string' || Buffer.byteLength(csrPem) > MAX_CSR_BYTES) {
    throw new KennelError('KENNEL_ERR_CSR_INVALID', `a CSR must be a PEM text of at most ${MAX_CSR_BYTES} bytes`)
  }
  let csr: x509.Pkcs10CertificateRequest
  try {
    if (!/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(csrPem)) throw new Error('no PEM header')
    csr = new x509.Pkcs10CertificateRequest(csrPem)
  } catch {
    throw new KennelError(
      'KENNEL_ERR_CSR_INVALID',
      'not a PEM PKCS#10 certificate request (-----BEGIN CERTIFICATE REQUEST-----)',
    )
  }
  checkKey(csr.publicKey.rawData)
  const hash = (csr.signatureAlgorithm as { hash?: { name?: string } }).hash?.name
  if (hash === undefined || !['SHA-256', 'SHA-384', 'SHA-512'].includes(hash)) {
    throw new KennelError(
      'KENNEL_ERR_CSR_ALGORITHM',
      `the CSR is signed with ${hash ?? 'an unknown algorithm'}; use SHA-256 or stronger`,
    )
  }
  let valid = false
  try {
    valid = await csr.verify()
  } catch {
    valid = false
  }
  if (!valid)
    throw new KennelError(
      'KENNEL_ERR_CSR_SIGNATURE',
      'the CSR signature does not verify with its own public key (forged or corrupted request)',
    )
  const cns = csr.subjectName.getField('CN')
  if (cns.length > 1 || (cns.length === 1 && cns[0] !== deviceId)) {
    throw new KennelError(
      'KENNEL_ERR_CSR_SUBJECT',
      `the CSR names CN=${JSON.stringify(cns.join(','))}, not the device id ${deviceId}`,
    )
  }
  return { publicKey: csr.publicKey, publicKeyId: sha256Hex(csr.publicKey.rawData) }
}

function checkKey(spki: ArrayBuffer): void {
  let key: KeyObject
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' })
  } catch {
    throw new KennelError(
      'KENNEL_ERR_CSR_ALGORITHM',
      'the CSR key uses an unknown algorithm or curve; use ECDSA P-256 (or P-384, RSA-2048+)',
    )
  }
  const details = key.asymmetricKeyDetails ?? {}
  if (key.asymmetricKeyType === 'ec') {
    const curve = details.namedCurve ?? 'unknown'
    if (ACCEPTED_CURVES.has(curve)) return
    if (WEAK_CURVES.has(curve))
      throw new KennelError('KENNEL_ERR_CSR_WEAK_KEY', `the CSR key is on curve ${curve}, weaker than P-256`)
    throw new KennelError(
      'KENNEL_ERR_CSR_ALGORITHM',
      `the CSR key is on curve ${curve}, which kennel does not accept; use P-256 or P-384`,
    )
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0
    if (bits < 2048)
      throw new KennelError('KENNEL_ERR_CSR_WEAK_KEY', `the CSR key is RSA-${bits}, weaker than RSA-2048`)
    if (bits > 8192)
      throw new KennelError('KENNEL_ERR_CSR_ALGORITHM', `the CSR key is RSA-${bits}; at most 8192 bits are accepted`)
    return
  }
  if (key.asymmetricKeyType === 'dsa')
    throw new KennelError(
      'KENNEL_ERR_CSR_WEAK_KEY',
      `the CSR key is ${key.asymmetricKeyType.toUpperCase()}; use ECDSA P-256`,
    )
  throw new KennelError(
    'KENNEL_ERR_CSR_ALGORITHM',
    `the CSR key is ${key.asymmetricKeyType ?? 'of an unknown type'}; use ECDSA P-256 (or P-384, RSA-2048+)`,
  )
}

/** 128 random bits as a positive serial (RFC 5280 §4.1.2.2), normalized. */
export function newSerial(random: (n: number) => Buffer): string {
  for (;;) {
    const bytes = random(16)
    if (bytes[0] !== 0) return normalizeSerial(bytes.toString('hex'))
  }
}

export interface DeviceCertificateRequest {
  issuer: CaIssuer
  /** sent after the leaf when the issuing CA is an intermediate */
  chainPem: string
  deviceId: string
  publicKey: x509.PublicKey
  publicKeyId: string
  serial: string
  now: Date
  validityDays: number
}

export async function signDeviceCertificate(
  req: DeviceCertificateRequest,
): Promise<{ certPem: string; issued: IssuedCertificate }> {
  const { issuer } = req
  const notBefore = new Date(req.now.getTime() - BACKDATE_MS)
  const wanted = new Date(req.now.getTime() + req.validityDays * 86_400_000)
  const notAfter = wanted > issuer.certificate.notAfter ? issuer.certificate.notAfter : wanted
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: req.serial.length % 2 === 0 ? req.serial : `0${req.serial}`,
    subject: [{ CN: [req.deviceId] }],
    issuer: issuer.certificate.subjectName,
    notBefore,
    notAfter,
    publicKey: req.publicKey,
    signingKey: issuer.signingKey,
    signingAlgorithm: issuer.signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `urn:kennel:device:${req.deviceId}` }], false),
      await x509.SubjectKeyIdentifierExtension.create(req.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate),
    ],
  })
  const leaf = `${cert.toString('pem')}\n`
  const certPem = issuer.info.intermediate ? leaf + req.chainPem : leaf
  return {
    certPem,
    issued: {
      serial: normalizeSerial(cert.serialNumber),
      caId: issuer.info.caId,
      notBefore: cert.notBefore.toISOString(),
      notAfter: cert.notAfter.toISOString(),
      fingerprint: sha256Hex(cert.rawData),
      publicKeyId: req.publicKeyId,
    },
  }
}
