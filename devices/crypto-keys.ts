import 'reflect-metadata'
import { createHash, createPrivateKey, createPublicKey, webcrypto, type KeyObject } from 'node:crypto'
import * as x509 from '@peculiar/x509'
import { KennelError } from '../infra/errors.ts'
import type { CaKeyAlgorithm } from './events.ts'

// Key handling shared by the CA, server certificates and enrolment: generation, PEM import into
// non-extractable WebCrypto keys, and the signature algorithm that goes with each key (R18).

x509.cryptoProvider.set(webcrypto as unknown as Crypto)

export const subtle = webcrypto.subtle as unknown as SubtleCrypto

export type KeyAlgorithmName = 'P-256' | 'P-384' | 'RSA-3072'

export function generationParams(alg: KeyAlgorithmName): RsaHashedKeyGenParams | EcKeyGenParams {
  return alg === 'RSA-3072'
    ? { name: 'RSASSA-PKCS1-v1_5', modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }
    : { name: 'ECDSA', namedCurve: alg }
}

export async function generateKeyPair(alg: KeyAlgorithmName): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(generationParams(alg), true, ['sign', 'verify'])) as CryptoKeyPair
}

export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey('pkcs8', key)
  return x509.PemConverter.encode(der, 'PRIVATE KEY')
}

const curves: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }

/** What a signing key is, read from the key itself rather than from configuration. */
export function describeKey(
  key: KeyObject,
):
  | { importParams: RsaHashedImportParams | EcKeyImportParams; signing: Algorithm | EcdsaParams; name: CaKeyAlgorithm }
  | undefined {
  const details = key.asymmetricKeyDetails ?? {}
  if (key.asymmetricKeyType === 'ec') {
    const curve = curves[details.namedCurve ?? '']
    if (curve === undefined) return undefined
    const hash = curve === 'P-256' ? 'SHA-256' : curve === 'P-384' ? 'SHA-384' : 'SHA-512'
    return {
      importParams: { name: 'ECDSA', namedCurve: curve },
      signing: { name: 'ECDSA', hash } as EcdsaParams,
      name: curve === 'P-521' ? 'other' : (curve as CaKeyAlgorithm),
    }
  }
  if (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048) {
    return {
      importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      signing: { name: 'RSASSA-PKCS1-v1_5' },
      name: details.modulusLength === 3072 ? 'RSA-3072' : 'other',
    }
  }
  return undefined
}

/** Import a PEM private key for signing only; the CryptoKey is not extractable, so the key
 * material cannot leak through a log line or a JSON dump of the object holding it. */
export async function importSigningKey(
  pem: string,
  what: string,
): Promise<{ key: CryptoKey; publicKeyDer: Buffer; signing: Algorithm | EcdsaParams; name: CaKeyAlgorithm }> {
  let keyObject: KeyObject
  try {
    keyObject = createPrivateKey(pem)
  } catch {
    throw new KennelError(
      'KENNEL_ERR_CA',
      `${what} is not a readable PEM private key (an encrypted key must be decrypted for kennel)`,
    )
  }
  const described = describeKey(keyObject)
  if (!described)
    throw new KennelError('KENNEL_ERR_CA', `${what} must be an ECDSA P-256/P-384/P-521 or RSA (at least 2048-bit) key`)
  const der = keyObject.export({ type: 'pkcs8', format: 'der' })
  const key = await subtle.importKey('pkcs8', der, described.importParams, false, ['sign'])
  const publicKeyDer = createPublicKey(keyObject).export({ type: 'spki', format: 'der' })
  return { key, publicKeyDer, signing: described.signing, name: described.name }
}

export function sha256Hex(data: ArrayBuffer | Uint8Array): string {
  return createHash('sha256').update(new Uint8Array(data)).digest('hex')
}
