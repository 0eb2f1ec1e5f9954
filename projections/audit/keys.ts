import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { KennelError } from '../../infra/errors.ts'

// The Ed25519 key that signs tree heads (R17). Development keeps a generated key in
// <dataDir>/audit/ (mode 0600); production names its key with KENNEL_AUDIT_KEY and never gets a
// generated one. Verifiers need only the public key.

export interface AuditSigner {
  /** SHA-256 of the public key's SPKI DER, hex: names the key in heads */
  readonly keyId: string
  readonly publicKeyPem: string
  sign(message: Uint8Array): Buffer
}

export interface AuditVerifier {
  readonly keyId: string
  verify(message: Uint8Array, signature: Uint8Array): boolean
}

export const keyIdOf = (publicKey: KeyObject): string =>
  createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')

export function signerFromPem(pem: string): AuditSigner {
  let key: KeyObject
  try {
    key = createPrivateKey(pem)
  } catch (err) {
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      `the audit signing key is not a private key in PEM form: ${(err as Error).message}`,
    )
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new KennelError('KENNEL_ERR_CONFIG', `the audit signing key must be Ed25519 (got ${key.asymmetricKeyType})`)
  const pub = createPublicKey(key)
  return {
    keyId: keyIdOf(pub),
    publicKeyPem: pub.export({ type: 'spki', format: 'pem' }).toString(),
    sign: (m) => sign(null, m, key),
  }
}

export function verifierFromPem(pem: string): AuditVerifier {
  let pub: KeyObject
  try {
    pub = createPublicKey(pem)
  } catch (err) {
    throw new KennelError('KENNEL_ERR_VALIDATION', `not a public key in PEM form: ${(err as Error).message}`)
  }
  if (pub.asymmetricKeyType !== 'ed25519')
    throw new KennelError(
      'KENNEL_ERR_VALIDATION',
      `the audit public key must be Ed25519 (got ${pub.asymmetricKeyType})`,
    )
  return { keyId: keyIdOf(pub), verify: (m, s) => verify(null, m, pub, s) }
}

export interface AuditKeyOptions {
  dataDir: string
  /** KENNEL_AUDIT_KEY: path of a PEM private key */
  keyPath: string | undefined
  env: string
}

export function devKeyPath(dataDir: string): string {
  return path.join(dataDir, 'audit', 'signing-key.pem')
}

/** the configured or development signing key, creating the development key when there is none:
 * only what signs heads (`kennel start`, `projections rebuild`) may call this */
export function loadAuditSigner(o: AuditKeyOptions): AuditSigner {
  const existing = findAuditSigner(o)
  if (existing) return existing
  const file = devKeyPath(o.dataDir)
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  fs.writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' })
  fs.writeFileSync(
    path.join(path.dirname(file), 'signing-key.pub.pem'),
    publicKey.export({ type: 'spki', format: 'pem' }),
    { mode: 0o644 },
  )
  return signerFromPem(readPrivate(file))
}

/** the configured or development signing key, never a new one: undefined when the development
 * key does not exist (a new key would sign heads no verifier of the old ones trusts) */
export function findAuditSigner(o: AuditKeyOptions): AuditSigner | undefined {
  if (o.keyPath !== undefined) return signerFromPem(readPrivate(o.keyPath))
  if (o.env === 'production')
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      'production requires KENNEL_AUDIT_KEY (an Ed25519 private key in PEM, mode 0600) (R17)',
    )
  const file = devKeyPath(o.dataDir)
  return fs.existsSync(file) ? signerFromPem(readPrivate(file)) : undefined
}

function readPrivate(file: string): string {
  let mode: number
  let pem: string
  try {
    mode = fs.statSync(file).mode
    pem = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new KennelError('KENNEL_ERR_CONFIG', `cannot read the audit signing key ${file}: ${(err as Error).message}`)
  }
  if (mode & 0o077)
    throw new KennelError(
      'KENNEL_ERR_INSECURE_KEY_FILE',
      `${file} is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
    )
  return pem
}
