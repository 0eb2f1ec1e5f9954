import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
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

export const keyIdOf = (publicKey: KeyObject): string => createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex')

export function signerFromPem(pem: string): AuditSigner {
  const key = createPrivateKey(pem)
  if (key.asymmetricKeyType !== 'ed25519') throw new KennelError('KENNEL_ERR_CONFIG', `the audit signing key must be Ed25519 (got ${key.asymmetricKeyType})`)
  const pub = createPublicKey(key)
  return { keyId: keyIdOf(pub), publicKeyPem: pub.export({ type: 'spki', format: 'pem' }).toString(), sign: (m) => sign(null, m, key) }
}

export function verifierFromPem(pem: string): AuditVerifier {
  let pub: KeyObject
  try {
    pub = createPublicKey(pem)
  } catch (err) {
    throw new KennelError('KENNEL_ERR_VALIDATION', `not a public key in PEM form: ${(err as Error).message}`)
  }
  if (pub.asymmetricKeyType !== 'ed25519') throw new KennelError('KENNEL_ERR_VALIDATION', `the audit public key must be Ed25519 (got ${pub.asymmetricKeyType})`)
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

export function loadAuditSigner(o: AuditKeyOptions): AuditSigner {
  if (o.keyPath !== undefined) return signerFromPem(readPrivate(o.keyPath))
  if (o.env === 'production') throw new KennelError('KENNEL_ERR_CONFIG', 'production requires KENNEL_AUDIT_KEY (an Ed25519 private key in PEM, mode 0600) (R17)')
  const file = devKeyPath(o.dataDir)
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    fs.writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' })
    fs.writeFileSync(path.join(path.dirname(file), 'signing-key.pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644 })
  }
  return signerFromPem(readPrivate(file))
}

function readPrivate(file: string): string {
  const mode = fs.statSync(file).mode
  if (mode & 0o077) throw new KennelError('KENNEL_ERR_INSECURE_KEY_FILE', `${file} is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`)
  return fs.readFileSync(file, 'utf8')
}
