import argon2 from 'argon2'
import { isDeviceId } from './device-id.ts'

// Claim codes (pairing a toy with a household): `<deviceId>.<secret>`. The device id is the
// public lookup key, so a claim is checked against one argon2id hash, never all of them; the
// secret carries 160 random bits, is shown once and stored only as its argon2id hash.

const SECRET_BYTES = 20
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789' // no 0/o, 1/l/i: printed on cards, typed by parents
const SECRET = /^[a-z2-9]{20,64}$/

// OWASP's argon2id baseline; the secret's entropy, not the cost, is what protects it.
const HASH_OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const

export function newClaimCode(deviceId: string, random: (n: number) => Buffer): { code: string; secret: string } {
  // 31 symbols: rejection sampling keeps every symbol equally likely
  const out: string[] = []
  const need = Math.ceil((SECRET_BYTES * 8) / Math.log2(ALPHABET.length))
  while (out.length < need) {
    for (const b of random(need)) if (b < 248 && out.length < need) out.push(ALPHABET[b % ALPHABET.length]!)
  }
  const secret = out.join('')
  return { code: `${deviceId}.${secret}`, secret }
}

export function parseClaimCode(code: unknown): { deviceId: string; secret: string } | undefined {
  if (typeof code !== 'string' || code.length > 200) return undefined
  const normalized = code.trim().toLowerCase().replace(/[\s_]/g, '')
  const dot = normalized.indexOf('.')
  if (dot < 0) return undefined
  const deviceId = normalized.slice(0, dot)
  const secret = normalized.slice(dot + 1)
  return isDeviceId(deviceId) && SECRET.test(secret) ? { deviceId, secret } : undefined
}

export function hashClaimSecret(secret: string): Promise<string> {
  return argon2.hash(secret, HASH_OPTIONS)
}

export async function claimSecretMatches(hash: string, secret: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, secret)
  } catch {
    return false
  }
}
