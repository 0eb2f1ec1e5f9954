import type { FastifyInstance } from 'fastify'
import swaggerUi from '@fastify/swagger-ui'

// The OpenAPI document (/docs/json, /docs/yaml) and Swagger UI to read it (/docs). The UI is
// the one place the API serves scripts of a third party, so it gets its own policy: scripts,
// styles and fonts from this origin only, the spec fetched from this origin, images also as
// data: URLs (its logo). Swagger UI sets this header in an onSend hook scoped to its routes,
// after the API's own hook; every other route keeps the policy that allows nothing.
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  // the one <style> element Swagger UI 5 adds, by its hash (test/system/console-browser.test.ts
  // fails on any violation Chromium reports)
  "style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ')

export async function registerDocs(app: FastifyInstance): Promise<void> {
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: DOCS_CSP,
    // no schema validation by validator.swagger.io: the page talks to this origin only
    uiConfig: { validatorUrl: null, deepLinking: false },
  })
}
