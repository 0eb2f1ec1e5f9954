import type { FastifyInstance, FastifyReply } from 'fastify'

// Security headers on every response: HSTS, no sniffing, no framing, no caching of API answers
// (they carry personal data and short-lived URLs), and a CSP that allows nothing to run.
export const securityHeaders: Readonly<Record<string, string>> = {
  'strict-transport-security': 'max-age=63072000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
  'cache-control': 'no-store',
}

export function setSecurityHeaders(reply: FastifyReply): void {
  for (const [name, value] of Object.entries(securityHeaders))
    if (!reply.hasHeader(name) || name !== 'cache-control') void reply.header(name, value)
}

export function registerSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (_req, reply, payload) => {
    setSecurityHeaders(reply)
    return payload
  })
}
