import { createHash, randomBytes } from 'node:crypto'

// Session tokens (kt_) and sign-up confirmation tokens (kv_): 256 random bits, shown once (the
// confirmation token only in the mail), stored only as their SHA-256 (R6, R13). A token's public
// id (sessionId, verificationId) names it in events and logs. Session lifetime:
// KENNEL_SESSION_TTL_MINUTES; confirmation: KENNEL_VERIFICATION_TTL_HOURS.
const TOKEN = /^kt_[A-Za-z0-9_-]{43}$/
export const VERIFICATION_TOKEN_PATTERN = '^kv_[A-Za-z0-9_-]{43}$'

export function newToken(): string {
  return `kt_${randomBytes(32).toString('base64url')}`
}

export function newVerificationToken(): string {
  return `kv_${randomBytes(32).toString('base64url')}`
}

/** the confirmation token in a mail's text (the demo and the tests read the outbox) */
export function findVerificationToken(text: string): string | undefined {
  return /\bkv_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/.exec(text)?.[0]
}

export function isTokenShaped(token: string): boolean {
  return TOKEN.test(token)
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}
