import { createHash, randomBytes } from 'node:crypto'

// Session tokens: 256 random bits, shown once, stored only as their SHA-256 (R6, R13). A token's
// public id (sessionId) names it in events and logs. Their lifetime is KENNEL_SESSION_TTL_MINUTES.
const TOKEN = /^kt_[A-Za-z0-9_-]{43}$/

export function newToken(): string {
  return `kt_${randomBytes(32).toString('base64url')}`
}

export function isTokenShaped(token: string): boolean {
  return TOKEN.test(token)
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}
