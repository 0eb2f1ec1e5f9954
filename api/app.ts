import { randomUUID } from 'node:crypto'
import path from 'node:path'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import swagger from '@fastify/swagger'
import type { Redis } from 'ioredis'
import { publicUrlOf, type Config } from '../infra/config.ts'
import type { BlobStore } from '../infra/blobstore/port.ts'
import { LocalBlobStore } from '../infra/blobstore/local.ts'
import { KeyRing } from '../infra/blobstore/keys.ts'
import { openKeyStore } from '../infra/keystore/open.ts'
import type { KeyStore } from '../infra/keystore/port.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Mailer } from '../infra/mail/port.ts'
import { followProjections } from '../projections/follow.ts'
import { devicesProjection } from '../devices/registry.ts'
import type { DeviceCa } from '../devices/ca.ts'
import { LoginLimiter } from './accounts/login-limiter.ts'
import { EmailProtector, PersonalData } from './accounts/personal-data.ts'
import { HouseholdSources } from '../infra/keystore/sealed-source.ts'
import { accountsProjection } from './accounts/projection.ts'
import { accountRoutes } from './accounts/routes.ts'
import { SignupMailLimiter } from './accounts/signup-mail-limiter.ts'
import { auditRoutes, type AuditPort } from './audit/routes.ts'
import { blobRoutes } from './blobs/routes.ts'
import type { ApiContext, NotifyDevice, PasswordHashing } from './context.ts'
import { consoleRoutes } from './console/routes.ts'
import { deviceRoutes } from './devices/routes.ts'
import { registerDocs } from './docs/routes.ts'
import { RequestLimit } from './guard/window-limiter.ts'
import { householdsProjection } from './households/projection.ts'
import { householdRoutes } from './households/routes.ts'
import { ApiMetrics } from './metrics.ts'
import { opsRoutes } from './ops/routes.ts'
import { answerFrameworkError, registerErrorHandling } from './plugins/errors.ts'
import { registerQueryCoercion } from './plugins/query-coercion.ts'
import { registerSecurityHeaders, setSecurityHeaders } from './plugins/security-headers.ts'
import { publicRoutes } from './public/routes.ts'
import type { ReadinessReport } from '../infra/ops/readiness.ts'
import { recordingsProjection } from './recordings/projection.ts'
import { recordingRoutes } from './recordings/routes.ts'
import { recordingUrlUses } from './recordings/url-uses.ts'

// buildApi: the whole REST API as a Fastify instance that does not listen; tests use
// app.inject(), api/listen.ts puts it on HTTPS. The read models it answers from are followed
// in memory from the event store.

export interface ApiDeps {
  config: Config
  store: EventStore
  /** the master key (infra/blobstore/keys.ts loadMasterKey) */
  masterKey: Buffer
  /** the device CA, for claims and renewals */
  ca: DeviceCa
  notifyDevice: NotifyDevice
  /** default: the embedded encrypted store in <dataDir>/blobs */
  blobs?: BlobStore
  /** person and household keys; default: the store that goes with the event store
   * (infra/keystore/open.ts: PostgreSQL for a cluster, else files in the data dir) */
  keys?: KeyStore
  /** sign-up confirmations (infra/mail/open.ts openMailer); closed by the caller */
  mailer: Mailer
  /** audit verification and breach reports (projections/); 503 without */
  audit?: AuditPort
  /** rate-limit store; default in memory */
  redis?: Redis
  now?: () => Date
  /** the origin of the API's own URLs; default KENNEL_PUBLIC_URL, else https://{KENNEL_HOST}:{KENNEL_API_PORT}
   * (bin/start.ts gives the port the listener is bound to) */
  publicUrl?: () => string
  logger?: FastifyServerOptions['loggerInstance'] | boolean
  /** argon2id cost; default 64 MiB, 3 passes */
  passwordHashing?: PasswordHashing
  metrics?: ApiMetrics
  /** the process's readiness, answered at GET /readyz without its figures (bin/readiness.ts);
   * default: ready once the API is built */
  readiness?: () => Promise<ReadinessReport>
}

export const JSON_BODY_LIMIT = 64 * 1024

declare module 'fastify' {
  interface FastifyInstance {
    /** the API's in-memory read models: tests and bin/ wait on them after appending elsewhere */
    readModels: { readonly position: number; waitFor(position: number): Promise<void> }
  }
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const { config } = deps
  const now = deps.now ?? (() => new Date())
  const followed = followProjections(
    deps.store,
    [devicesProjection, accountsProjection, householdsProjection, recordingsProjection],
    typeof deps.logger === 'object' ? deps.logger : undefined,
  )
  await followed.caughtUp
  const keys = deps.keys ?? (await openKeyStore(config, typeof deps.logger === 'object' ? deps.logger : undefined))
  const blobs =
    deps.blobs ??
    new LocalBlobStore({
      dir: path.join(config.dataDir, 'blobs'),
      masterKey: deps.masterKey,
      keys: new KeyRing(keys, deps.masterKey, 'household-data', { now }),
      now,
    })
  const personKeys = new KeyRing(keys, deps.masterKey, 'person', { now })

  const metrics = deps.metrics ?? new ApiMetrics()
  const limitDeps = { store: deps.store, now, metrics, redis: deps.redis }
  const ctx: ApiContext = {
    config,
    store: deps.store,
    blobs,
    notifyDevice: deps.notifyDevice,
    ca: deps.ca,
    now,
    publicUrl: deps.publicUrl ?? (() => publicUrlOf(config, config.apiPort)),
    docs: followed.docs,
    async append(stream, events, expectedRevision = 'any') {
      const result = await deps.store.append(stream, events, { expectedRevision })
      await followed.waitFor(result.position)
      return result
    },
    async catchUp() {
      await followed.waitFor(await deps.store.headPosition())
    },
    emails: new EmailProtector(deps.masterKey, personKeys),
    personalData: new PersonalData(personKeys),
    householdSources: new HouseholdSources(new KeyRing(keys, deps.masterKey, 'household-data', { now })),
    loginLimiter: new LoginLimiter(
      {
        freeFailures: config.loginLimits,
        firstDelaySeconds: config.loginFirstDelaySeconds,
        maxDelaySeconds: config.loginMaxDelaySeconds,
        ipDailyFailures: config.loginIpDailyLimit,
      },
      deps.redis,
    ),
    mailer: deps.mailer,
    signupMailLimiter: new SignupMailLimiter(config.signupMailsPerHour, deps.redis),
    deviceLimiter: new RequestLimit('device-api', 'certificate', config.deviceApiLimits, limitDeps),
    accountLimiter: new RequestLimit('account-api', 'account', config.accountApiLimits, limitDeps),
    metrics,
    passwordHashing: deps.passwordHashing ?? { memoryCost: 65536, timeCost: 3, parallelism: 1 },
    redis: deps.redis,
  }

  const logger = deps.logger ?? false
  const app = Fastify({
    ...(typeof logger === 'boolean' ? { logger } : { loggerInstance: logger }),
    bodyLimit: JSON_BODY_LIMIT,
    genReqId: () => randomUUID(),
    trustProxy: false,
    return503OnClosing: true,
    // errors Fastify answers while routing, before any hook: the same shape and headers as the rest
    frameworkErrors: (err, req, reply) => (setSecurityHeaders(reply), answerFrameworkError(err, req, reply)),
    routerOptions: { maxParamLength: 200 },
    // reject unknown properties instead of silently dropping them (Fastify's default removes
    // them), and validate JSON bodies as sent: only query strings are converted (query-coercion.ts)
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  })
  app.decorateRequest('account', null)
  app.decorateRequest('device', null)
  app.decorate('readModels', {
    get position() {
      return followed.position
    },
    waitFor: (position: number) => followed.waitFor(position),
  })
  registerErrorHandling(app)
  registerQueryCoercion(app)
  registerSecurityHeaders(app)
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched'
    ctx.metrics.requests.inc({ route, status: String(reply.statusCode) })
    ctx.metrics.duration.observe({ route }, reply.elapsedTime / 1000)
  })
  app.addHook('onClose', async () => {
    await followed.stop()
    if (!deps.blobs) await blobs.close()
    if (!deps.keys) await keys.close()
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'kennel API',
        version: '1',
        description:
          'Parents (bearer token), toys (client certificate), ops and auditors (roles). Errors: {"error":{"code":"KENNEL_ERR_…","message"}}.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          deviceCertificate: { type: 'mutualTLS' as 'http', scheme: 'mutualTLS' },
        },
      },
    },
  })
  await registerDocs(app)
  await app.register(publicRoutes, {
    config,
    publicUrl: ctx.publicUrl,
    startedAt: now(),
    readiness: deps.readiness ?? (async () => ({ ready: true, checks: {} })),
  })
  await app.register(accountRoutes, { ctx })
  await app.register(householdRoutes, { ctx })
  await app.register(recordingRoutes, { ctx })
  await app.register(deviceRoutes, { ctx })
  await app.register(opsRoutes, { ctx })
  await app.register(auditRoutes, { ctx, audit: deps.audit })
  await app.register(consoleRoutes)
  // the limits' refusals counted since a block's first event are recorded before the API stops
  app.addHook('onClose', () => Promise.all([ctx.deviceLimiter.flush(), ctx.accountLimiter.flush()]))
  if (blobs instanceof LocalBlobStore) {
    const uses = recordingUrlUses(ctx, app.log)
    // the refusals counted since a block's first event are recorded before the API stops
    app.addHook('onClose', () => uses.flush())
    await app.register(blobRoutes, { blobs, uses })
  }
  return app
}
