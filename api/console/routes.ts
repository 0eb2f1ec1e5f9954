import fs from 'node:fs'
import type { FastifyInstance } from 'fastify'

// The ops and auditor console (README.md, "Console"): a page and a few small ES modules, read once
// from api/console/public and served as they are, no build step. Nothing here carries data or
// needs a login: the page logs in with POST /v1/sessions, keeps the token in memory and calls the
// same /v1/ops and /v1/audit routes as the CLI, which decide who may see what (R4).

/** scripts, styles and requests to this origin only; nothing inline, nothing framed, no forms
 * posted by the browser (the modules send every request themselves) */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ')

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
}

const PUBLIC = new URL('./public/', import.meta.url)

/** every file of the console, by name: only these names are served */
function loadFiles(): Map<string, { body: Buffer; type: string }> {
  const files = new Map<string, { body: Buffer; type: string }>()
  for (const name of fs.readdirSync(PUBLIC)) {
    const type = TYPES[name.slice(name.lastIndexOf('.'))]
    if (type) files.set(name, { body: fs.readFileSync(new URL(name, PUBLIC)), type })
  }
  return files
}

export async function consoleRoutes(app: FastifyInstance): Promise<void> {
  const files = loadFiles()
  app.addHook('onSend', async (_req, reply, payload) => {
    void reply.header('content-security-policy', CONSOLE_CSP)
    return payload
  })
  const page = files.get('index.html')!
  app.get('/console', { schema: { hide: true } }, async (_req, reply) => reply.type(page.type).send(page.body))
  app.get<{ Params: { file: string } }>(
    '/console/:file',
    {
      schema: {
        hide: true,
        params: {
          type: 'object',
          additionalProperties: false,
          required: ['file'],
          properties: { file: { type: 'string', pattern: '^[a-z-]+\\.(js|css|svg)$' } },
        },
      },
    },
    async (req, reply) => {
      const file = files.get(req.params.file)
      if (!file) return reply.callNotFound()
      return reply.type(file.type).send(file.body)
    },
  )
}
