import { loadMasterKey } from '../../infra/blobstore/keys.ts'
import https from 'node:https'
import type { FastifyInstance } from 'fastify'
import { buildApi, type ApiDeps } from '../../api/app.ts'
import { listenApi, type ListeningApi } from '../../api/listen.ts'
import { ApiMetrics } from '../../api/metrics.ts'
import { loadServerTls } from '../../devices/server-tls.ts'
import { publicUrlOf } from '../../infra/config.ts'
import { findVerificationToken } from '../../api/accounts/tokens.ts'
import { OutboxMailer, outboxDir, readOutbox, type OutboxMessage } from '../../infra/mail/outbox.ts'
import { createTestPki, type TestPki } from '../helpers/pki.ts'

// A whole API on a temporary data dir: a real event store, a development CA, the embedded blob
// store, the development mail outbox (read back to confirm sign-ups), a fake toy notifier that
// records its calls, cheap argon2 parameters.

interface T {
  teardown(fn: () => unknown): void
}

export interface TestApi {
  app: FastifyInstance
  pki: TestPki
  metrics: ApiMetrics
  notifications: Array<{ deviceId: string; subtopic: string; payload: Record<string, unknown> }>
  /** the port listenTestApi bound: the API's URLs name it, as bin/start.ts wires it */
  boundPort: number
  /** the mails sent so far (the development outbox), oldest first */
  outbox(): OutboxMessage[]
  /** sign up and confirm the address with the token from the mail; returns the account id */
  signUp(email: string, password?: string): Promise<string>
  /** sign up, confirm, log in and create a household; returns the bearer token */
  parent(email: string): Promise<{ token: string; accountId: string; householdId: string }>
  /** enrol a toy and pair it with the household */
  pairedToy(token: string, householdId: string, deviceId: string): Promise<Awaited<ReturnType<TestPki['enroll']>>>
}

export const STRONG = 'violet-Harbour-43-quiet-Lantern'

export async function buildTestApi(
  t: T,
  opts: { env?: Record<string, string>; deps?: Partial<ApiDeps> } = {},
): Promise<TestApi> {
  const pki = await createTestPki(t, opts.env)
  const notifications: TestApi['notifications'] = []
  const metrics = new ApiMetrics()
  let api: TestApi | undefined
  const mailer = new OutboxMailer(outboxDir(pki.config.dataDir), pki.config.mailFrom)
  t.teardown(() => mailer.close())
  const app = await buildApi({
    mailer,
    config: pki.config,
    store: pki.store,
    masterKey: loadMasterKey(pki.config),
    ca: pki.ca,
    notifyDevice: (deviceId, subtopic, payload) => void notifications.push({ deviceId, subtopic, payload }),
    passwordHashing: { memoryCost: 4096, timeCost: 1, parallelism: 1 },
    metrics,
    publicUrl: () => publicUrlOf(pki.config, api?.boundPort ?? pki.config.apiPort),
    ...opts.deps,
  })
  t.teardown(() => app.close())
  const self: TestApi = {
    app,
    pki,
    metrics,
    notifications,
    boundPort: pki.config.apiPort,
    outbox: () => readOutbox(outboxDir(pki.config.dataDir)),
    async signUp(email, password = STRONG) {
      const created = await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email, password } })
      if (created.statusCode !== 202) throw new Error(`signup ${created.statusCode} ${created.body}`)
      const token = self
        .outbox()
        .filter((m) => m.headers.to === email)
        .map((m) => findVerificationToken(m.text))
        .at(-1)
      if (!token) throw new Error(`no confirmation mail to ${email}`)
      const verified = await app.inject({ method: 'POST', url: '/v1/accounts/verify', payload: { token } })
      if (verified.statusCode !== 200) throw new Error(`verify ${verified.statusCode} ${verified.body}`)
      return (verified.json() as { accountId: string }).accountId
    },
    async parent(email) {
      const accountId = await self.signUp(email)
      const session = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password: STRONG } })
      const { token } = session.json() as { token: string }
      const household = await app.inject({
        method: 'POST',
        url: '/v1/households',
        headers: { authorization: `Bearer ${token}` },
      })
      return { token, accountId, householdId: (household.json() as { householdId: string }).householdId }
    },
    async pairedToy(token, householdId, deviceId) {
      const toy = await pki.enroll(deviceId)
      const paired = await app.inject({
        method: 'POST',
        url: `/v1/households/${householdId}/devices`,
        headers: { authorization: `Bearer ${token}` },
        payload: { claimCode: toy.claimCode },
      })
      if (paired.statusCode !== 201) throw new Error(`pairing ${paired.statusCode} ${paired.body}`)
      return toy
    },
  }
  api = self
  return self
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** the API on real HTTPS, port 0 (whatever the test's configuration says: tests run side by side) */
export async function listenTestApi(t: T, api: TestApi): Promise<ListeningApi & { caPem: string }> {
  const tls = await loadServerTls(api.pki.config, api.pki.ca)
  const listening = await listenApi(api.app, {
    config: { ...api.pki.config, apiPort: 0 },
    tls,
    trustedCaPem: api.pki.ca.trustedPem,
    store: api.pki.store,
    metrics: api.metrics,
  })
  t.teardown(() => listening.close())
  api.boundPort = listening.port
  return { ...listening, caPem: api.pki.ca.trustedPem }
}

export interface HttpsReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  // biome-ignore lint/suspicious/noExplicitAny: tests read fields of the JSON answer they assert on
  json(): any
}

/** one HTTPS request with (or without) a client certificate */
export function request(
  port: number,
  opts: {
    method: string
    path: string
    ca: string
    key?: string
    cert?: string
    body?: unknown
    rawBody?: string
    agent?: https.Agent
    headers?: Record<string, string>
    localAddress?: string
  },
): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const payload = opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body))
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port,
        method: opts.method,
        path: opts.path,
        ca: opts.ca,
        key: opts.key,
        cert: opts.cert,
        agent: opts.agent ?? false,
        ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
        headers: {
          ...(payload !== undefined
            ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }
            : {}),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8')
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) })
        })
      },
    )
    req.on('error', reject)
    if (payload !== undefined) req.write(payload)
    req.end()
  })
}
