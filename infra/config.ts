import path from 'node:path'
import { KennelError } from './errors.ts'

// One typed, validated, frozen configuration object built from KENNEL_* variables.
// Each key carries its environment name, a doc string (rendered into the README table) and a
// default; a bad value stops start-up with KENNEL_ERR_CONFIG naming the variable.

export type Environment = 'development' | 'test' | 'production'

interface Key<T> {
  env: string
  doc: string
  default: string | undefined
  parse: (raw: string, env: string) => T
}

function key<T>(env: string, doc: string, dflt: string | undefined, parse: (raw: string, env: string) => T): Key<T> {
  return { env, doc, default: dflt, parse }
}

function bad(env: string, expected: string, raw: string): never {
  throw new KennelError('KENNEL_ERR_CONFIG', `${env} must be ${expected} (got ${JSON.stringify(raw)})`)
}

const oneOf =
  <T extends string>(...values: T[]) =>
  (raw: string, env: string): T =>
    (values as string[]).includes(raw) ? (raw as T) : bad(env, `one of ${values.join('|')}`, raw)

const port = (raw: string, env: string): number => {
  const n = Number(raw)
  return /^\d+$/.test(raw) && n >= 0 && n <= 65535 ? n : bad(env, 'a TCP port 0-65535 (0 = any free port)', raw)
}

const int =
  (min: number, max: number) =>
  (raw: string, env: string): number => {
    const n = Number(raw)
    return /^\d+$/.test(raw) && n >= min && n <= max ? n : bad(env, `an integer ${min}-${max}`, raw)
  }

const text = (raw: string): string => raw

const optional =
  <T>(parse: (raw: string, env: string) => T) =>
  (raw: string, env: string): T | undefined =>
    raw === '' ? undefined : parse(raw, env)

const url =
  (...protocols: string[]) =>
  (raw: string, env: string): string => {
    let u: URL
    try {
      u = new URL(raw)
    } catch {
      return bad(env, `a URL (${protocols.join(', ')})`, raw)
    }
    return protocols.includes(u.protocol) ? raw : bad(env, `a URL with scheme ${protocols.join(' or ')}`, raw)
  }

// R5, R13: the origin of the URLs kennel hands out comes from here, never from a request's Host
const httpsOrigin = (raw: string, env: string): string => {
  const expected = 'an https URL with no path, query or fragment, like https://api.toys.example'
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    return bad(env, expected, raw)
  }
  const bare =
    u.protocol === 'https:' &&
    u.username === '' &&
    u.password === '' &&
    u.pathname === '/' &&
    !raw.includes('?') &&
    !raw.includes('#')
  return bare ? u.origin : bad(env, expected, raw)
}

const list = (raw: string): string[] =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

const cidrList = (raw: string, env: string): string[] => {
  const cidrs = list(raw)
  for (const c of cidrs) {
    const [addr, bits, extra] = c.split('/')
    const v4 =
      addr !== undefined && /^(\d{1,3}\.){3}\d{1,3}$/.test(addr) && addr.split('.').every((o) => Number(o) <= 255)
    const v6 = addr?.includes(':') && /^[0-9a-fA-F:.]+$/.test(addr)
    const max = v4 ? 32 : 128
    const bitsOk = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= max)
    if (!(v4 || v6) || !bitsOk || extra !== undefined)
      bad(env, 'a comma-separated list of CIDRs (e.g. 198.51.100.0/24,2001:db8::/32)', c)
  }
  return cidrs
}

// "60/minute,200/hour,400/day"
export interface RateWindow {
  points: number
  durationSeconds: number
  label: string
}
const windows: Record<string, number> = { second: 1, minute: 60, hour: 3600, day: 86400 }
const rateList = (raw: string, env: string): RateWindow[] =>
  list(raw).map((part) => {
    const m = /^(\d+)\/(second|minute|hour|day)$/.exec(part)
    if (!m || Number(m[1]) < 1) return bad(env, 'limits like 60/minute,200/hour,400/day', raw)
    return { points: Number(m[1]), durationSeconds: windows[m[2]!]!, label: m[2]! }
  })

const tlsVersion = oneOf('TLSv1.2', 'TLSv1.3')

// smtps://user:pass@host:465 or smtp://user:pass@host:587 (STARTTLS required, infra/mail/smtp.ts);
// no query string: nodemailer would read options from it, `?ignoreTLS=true` among them
const smtpUrl = (raw: string, env: string): string => {
  const expected =
    'smtps://user:password@host[:port] or smtp://user:password@host[:port] (STARTTLS required), without a query string'
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    return bad(env, expected, '<redacted>')
  }
  return (u.protocol === 'smtps:' || u.protocol === 'smtp:') &&
    u.hostname !== '' &&
    u.search === '' &&
    u.hash === '' &&
    (u.pathname === '' || u.pathname === '/')
    ? raw
    : bad(env, expected, '<redacted>')
}

// "kennel <no-reply@toys.example>" or "no-reply@toys.example": one mailbox, no line breaks (a
// header injected through the sender would reach every mail)
const mailbox = (raw: string, env: string): string =>
  /^([^\r\n<>"]{0,100} )?<[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+>$|^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/.test(raw)
    ? raw
    : bad(env, 'one address like "kennel <no-reply@toys.example>"', raw)

// "20/60s": a security-monitor rule fires when its measure reaches 20 within 60 seconds (R11)
export interface MonitorThreshold {
  count: number
  windowSeconds: number
}
const threshold = (raw: string, env: string): MonitorThreshold => {
  const m = /^(\d+)\/(\d+)s$/.exec(raw)
  const count = Number(m?.[1])
  const windowSeconds = Number(m?.[2])
  if (!m || count < 1 || count > 1_000_000 || windowSeconds < 1 || windowSeconds > 30 * 86400)
    return bad(env, 'a count within a window like 20/60s (count 1-1000000, window 1-2592000 s)', raw)
  return { count, windowSeconds }
}

/** what a node does (KENNEL_ROLES): `broker` serves toys over MQTT, `api` serves HTTPS, `projector`
 * keeps the persistent read models, the audit log and the security monitor and delivers alerts */
export type Role = 'broker' | 'api' | 'projector'
export const ROLES: readonly Role[] = Object.freeze(['broker', 'api', 'projector'])
const roleList = (raw: string, env: string): readonly Role[] => {
  const given = list(raw)
  const unknown = given.filter((r) => !(ROLES as readonly string[]).includes(r))
  if (unknown.length > 0)
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      `${env} names unknown role${unknown.length > 1 ? 's' : ''} ${unknown.map((r) => JSON.stringify(r)).join(', ')}: expected a comma-separated list of ${ROLES.join(', ')}`,
      { variable: env, unknown },
    )
  if (given.length === 0) return bad(env, `a comma-separated list of ${ROLES.join(', ')}`, raw)
  return Object.freeze(ROLES.filter((r) => given.includes(r)))
}

export const configKeys = {
  env: key(
    'KENNEL_ENV',
    'development, test or production; stores and CAs remember the environment that made them (R8)',
    'development',
    oneOf<Environment>('development', 'test', 'production'),
  ),
  dataDir: key(
    'KENNEL_DATA_DIR',
    'directory for the embedded event store, blobs, development CA and keys (git-ignored)',
    './data',
    text,
  ),
  eventStore: key(
    'KENNEL_EVENTSTORE',
    'event store URL: `sqlite:` (file in the data dir), `sqlite:/path/file.sqlite`, `postgres://…`, `esdb://…`',
    'sqlite:',
    (raw, env) => {
      if (
        raw === 'sqlite:' ||
        raw.startsWith('sqlite:') ||
        raw.startsWith('postgres://') ||
        raw.startsWith('postgresql://') ||
        raw.startsWith('esdb://') ||
        raw.startsWith('esdb+discover://') ||
        raw.startsWith('kurrentdb://')
      )
        return raw
      return bad(env, 'a URL starting with sqlite:, postgres://, esdb:// or kurrentdb://', raw)
    },
  ),
  roles: key(
    'KENNEL_ROLES',
    'what this node runs, comma-separated: `broker` (MQTT listener), `api` (HTTPS API), `projector` (persistent read models, audit log and signed heads, security monitor, alert delivery; on PostgreSQL one projector of the cluster is active, the others stand by and take over within seconds of its death; beside another role it runs on a thread of its own). An `api` node without `broker` needs KENNEL_REDIS_URL to reach toys',
    'broker,api,projector',
    roleList,
  ),
  host: key('KENNEL_HOST', 'address the MQTT and API listeners bind to', '127.0.0.1', text),
  mqttPort: key('KENNEL_MQTT_PORT', 'MQTT over mutual TLS (0 = any free port; the real port is logged)', '8883', port),
  apiPort: key('KENNEL_API_PORT', 'HTTPS API (0 = any free port; the real port is logged)', '8443', port),
  publicUrl: key(
    'KENNEL_PUBLIC_URL',
    "origin of the URLs the API hands out (recording URLs of the embedded blob store, security.txt Canonical), never taken from a request's Host header: https://host[:port], no path; unset = https://{KENNEL_HOST}:{the API's bound port} (R5, R13)",
    '',
    optional(httpsOrigin),
  ),
  metricsPort: key(
    'KENNEL_METRICS_PORT',
    'the operations listener: Prometheus /metrics, /healthz (liveness) and /readyz (readiness with figures), plain HTTP (0 = any free port)',
    '9464',
    port,
  ),
  metricsHost: key(
    'KENNEL_METRICS_HOST',
    'address the operations listener binds to; loopback by default: set a private address only the scraper and the orchestrator reach, never a public one (R11)',
    '127.0.0.1',
    text,
  ),
  readyMaxLagEvents: key(
    'KENNEL_READY_MAX_LAG_EVENTS',
    'events the read models may be behind the event store while /readyz still answers ready; every API node reads the same read models, so a low bound takes them all out of rotation together under a burst',
    '10000',
    int(1, 1_000_000_000),
  ),
  logLevel: key(
    'KENNEL_LOG_LEVEL',
    'pino log level',
    'info',
    oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  ),
  redisUrl: key(
    'KENNEL_REDIS_URL',
    'Redis for rate limits and broker clustering (unset = in-memory, one process)',
    '',
    optional(url('redis:', 'rediss:')),
  ),
  tlsMinVersion: key('KENNEL_TLS_MIN_VERSION', 'lowest TLS version accepted (R18)', 'TLSv1.2', tlsVersion),
  tlsCiphers: key(
    'KENNEL_TLS_CIPHERS',
    'OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are always the strong defaults)',
    'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305',
    text,
  ),
  tlsCurves: key('KENNEL_TLS_CURVES', 'ECDH groups offered, colon-separated', 'X25519:P-256:P-384', text),
  tlsCert: key(
    'KENNEL_TLS_CERT',
    'server certificate chain (PEM) for the listeners; must chain to a certificate of KENNEL_CA_CERT or KENNEL_CA_PREVIOUS_CERTS (the offline root), which toys verify it with; required in production',
    '',
    optional(text),
  ),
  tlsKey: key('KENNEL_TLS_KEY', 'server private key (PEM, mode 0600); required in production', '', optional(text)),
  caCert: key(
    'KENNEL_CA_CERT',
    'device CA certificate chain (PEM): issuing CA first, then up to the offline root; required in production',
    '',
    optional(text),
  ),
  caKey: key('KENNEL_CA_KEY', 'device CA private key (PEM, mode 0600); required in production', '', optional(text)),
  caPreviousCerts: key(
    'KENNEL_CA_PREVIOUS_CERTS',
    'comma-separated PEM files of rolled-over device CAs whose certificates stay trusted until they expire (R18)',
    '',
    optional(list),
  ),
  caKeyAlgorithm: key(
    'KENNEL_CA_KEY_ALGORITHM',
    'key algorithm of newly created development CAs (root and device CAs) (R18)',
    'P-256',
    oneOf('P-256', 'P-384', 'RSA-3072'),
  ),
  certValidityDays: key('KENNEL_CERT_VALIDITY_DAYS', 'validity of issued device certificates', '365', int(1, 3650)),
  renewalGraceHours: key(
    'KENNEL_RENEWAL_GRACE_HOURS',
    'how long a renewed device certificate stays valid after renewal',
    '24',
    int(0, 24 * 90),
  ),
  claimCodeTtlHours: key(
    'KENNEL_CLAIM_CODE_TTL_HOURS',
    'lifetime of a claim code printed at enrolment',
    '720',
    int(1, 24 * 365),
  ),
  maxPayloadBytes: key(
    'KENNEL_MAX_PAYLOAD_BYTES',
    'largest MQTT packet accepted from a toy',
    '262144',
    int(1, 256 * 1024 * 1024),
  ),
  mqttConnectLimits: key('KENNEL_MQTT_CONNECT_LIMITS', 'MQTT connect attempts per device (R6)', '10/minute', rateList),
  mqttConnectIpLimits: key(
    'KENNEL_MQTT_CONNECT_IP_LIMITS',
    'MQTT connect attempts per source IP (R6)',
    '60/minute',
    rateList,
  ),
  mqttPublishLimits: key(
    'KENNEL_MQTT_PUBLISH_LIMITS',
    'MQTT publishes per device (R6)',
    '100/second,3000/minute',
    rateList,
  ),
  mqttByteLimits: key('KENNEL_MQTT_BYTE_LIMITS', 'MQTT payload bytes per device (R6)', '4194304/minute', rateList),
  mqttSubscribeLimits: key(
    'KENNEL_MQTT_SUBSCRIBE_LIMITS',
    'MQTT subscription filters per device, each filter of a SUBSCRIBE counted (R6); the filters a persistent session restores on reconnect are not',
    '100/minute',
    rateList,
  ),
  mqttMaxSubscriptions: key(
    'KENNEL_MQTT_MAX_SUBSCRIPTIONS',
    'subscription filters one MQTT session may hold; a filter beyond it gets SUBACK 0x80 (R6)',
    '64',
    int(1, 100000),
  ),
  mqttMaxRetained: key(
    'KENNEL_MQTT_MAX_RETAINED',
    'topics one toy may hold a retained message on; a retained publish to a further topic is refused and closes the connection, an empty one clears its topic (R6); 0: no retained messages',
    '16',
    int(0, 100000),
  ),
  deviceApiLimits: key(
    'KENNEL_DEVICE_API_LIMITS',
    'device API calls per certificate (R6)',
    '60/minute,200/hour,400/day',
    rateList,
  ),
  accountApiLimits: key(
    'KENNEL_ACCOUNT_API_LIMITS',
    'requests per account on the bearer routes (parents, ops, auditors); over it 429 and a RateLimitExceeded (R6)',
    '600/minute,10000/hour',
    rateList,
  ),
  loginLimits: key(
    'KENNEL_LOGIN_FAILURE_LIMIT',
    'consecutive failed logins per account and IP answered at once; after them each attempt waits, the wait doubling with each further failure (R6)',
    '5',
    int(1, 1000),
  ),
  loginFirstDelaySeconds: key(
    'KENNEL_LOGIN_FIRST_DELAY_SECONDS',
    'the first wait after KENNEL_LOGIN_FAILURE_LIMIT failures, in seconds; then 2×, 4×, … (R6)',
    '1',
    int(1, 3600),
  ),
  loginMaxDelaySeconds: key(
    'KENNEL_LOGIN_MAX_DELAY_SECONDS',
    'the longest wait between failed logins per account and IP, in seconds (R6)',
    '900',
    int(1, 86400),
  ),
  loginIpDailyLimit: key(
    'KENNEL_LOGIN_IP_DAILY_LIMIT',
    'failed logins per source IP per day (R6)',
    '100',
    int(1, 1_000_000),
  ),
  verificationTtlHours: key(
    'KENNEL_VERIFICATION_TTL_HOURS',
    'lifetime of the token in a sign-up confirmation mail, in hours (R15)',
    '24',
    int(1, 168),
  ),
  smtpUrl: key(
    'KENNEL_SMTP_URL',
    'mail server for sign-up confirmations: `smtps://user:password@host:465` or `smtp://…:587` with STARTTLS required, never plaintext; unset = each mail written as an .eml file to <data dir>/outbox/ (development, test); required in production',
    '',
    optional(smtpUrl),
  ),
  signupMailsPerHour: key(
    'KENNEL_SIGNUP_MAILS_PER_HOUR',
    'sign-up mails sent to one address per hour; over it sign-up answers as always and sends none (R15)',
    '5',
    int(1, 1000),
  ),
  mailFrom: key(
    'KENNEL_MAIL_FROM',
    'sender of the mails kennel sends; must be set in production',
    'kennel <no-reply@kennel.invalid>',
    mailbox,
  ),
  sessionTtlMinutes: key(
    'KENNEL_SESSION_TTL_MINUTES',
    'lifetime of a session token from POST /v1/sessions, in minutes (R6)',
    '720',
    int(5, 10_080),
  ),
  exportFreshLoginSeconds: key(
    'KENNEL_EXPORT_FRESH_LOGIN_SECONDS',
    'GET /v1/accounts/me/export answers a session this many seconds after its login (the login was the password); older sessions POST the password again; 0: always the password (R12)',
    '300',
    int(0, 3600),
  ),
  denylist: key('KENNEL_DENYLIST', 'CIDRs refused on accept, before TLS, on broker and API (R9)', '', cidrList),
  tlsHandshakeTimeoutSeconds: key(
    'KENNEL_TLS_HANDSHAKE_TIMEOUT_SECONDS',
    'seconds from TCP accept to the end of the TLS handshake on the MQTT and API listeners; a slower or silent peer is disconnected (R9)',
    '10',
    int(1, 300),
  ),
  connectTimeoutSeconds: key(
    'KENNEL_CONNECT_TIMEOUT_SECONDS',
    'seconds after the TLS handshake for a toy to be accepted over MQTT (CONNACK 0) or an HTTPS client to send its first request head; slower peers are disconnected (R9)',
    '10',
    int(1, 300),
  ),
  unauthenticatedPerIp: key(
    'KENNEL_UNAUTHENTICATED_PER_IP',
    'connections one IPv4 address or IPv6 /64 may hold open on each listener before they are authenticated (CONNACK 0 sent, first HTTPS request received); more are refused on accept, before TLS (R9)',
    '128',
    int(1, 1_000_000),
  ),
  retentionRecordingsDays: key(
    'KENNEL_RETENTION_RECORDINGS_DAYS',
    "recordings older than this many days are deleted (object deleted, RecordingExpired appended) by an hourly job of the projector; the production bucket's lifecycle rule uses the same number (R12)",
    '365',
    int(1, 36500),
  ),
  retentionTelemetryDays: key(
    'KENNEL_RETENTION_TELEMETRY_DAYS',
    "per-message metadata (PublishAccepted, InboxMessagePublished) older than this many days is dropped from the audit log's index by an hourly job of the projector: breach reports no longer list those publishes; the events stay in the event store, security-relevant ones stay indexed (R12, docs/PRIVACY.md)",
    '90',
    int(1, 36500),
  ),
  presignTtlSeconds: key(
    'KENNEL_PRESIGN_TTL_SECONDS',
    'lifetime of presigned recording URLs, at most 900 (R5)',
    '300',
    int(1, 900),
  ),
  s3Bucket: key(
    'KENNEL_S3_BUCKET',
    'S3 bucket for recordings (unset = encrypted blob store in the data dir)',
    '',
    optional(text),
  ),
  s3Region: key('KENNEL_S3_REGION', 'S3 region', 'us-east-1', text),
  s3Endpoint: key(
    'KENNEL_S3_ENDPOINT',
    'S3 endpoint URL for S3-compatible stores',
    '',
    optional(url('https:', 'http:')),
  ),
  s3KmsKeyId: key('KENNEL_S3_KMS_KEY_ID', 'KMS key for SSE-KMS (unset = SSE-S3 AES256) (R12)', '', optional(text)),
  masterKey: key(
    'KENNEL_MASTER_KEY',
    'base64 256-bit key wrapping per-household and per-person keys; generated in the data dir in development, required in production (R12)',
    '',
    optional((raw, env) =>
      Buffer.from(raw, 'base64').length === 32 ? raw : bad(env, 'a base64-encoded 32-byte key', '<redacted>'),
    ),
  ),
  securityContact: key(
    'KENNEL_SECURITY_CONTACT',
    'security.txt Contact (mailto: or https: URI) (R10)',
    'mailto:security@example.com',
    text,
  ),
  securityTxtExpires: key(
    'KENNEL_SECURITY_TXT_EXPIRES_DAYS',
    'security.txt Expires, in days from start (R10)',
    '180',
    int(1, 366),
  ),
  alertWebhook: key(
    'KENNEL_ALERT_WEBHOOK',
    "URL that receives security alerts as JSON POSTs, at least once: each POST carries the alert's event id as `Idempotency-Key` (and `id`), so the receiver drops repeats (a retry, a projector taking over) (R11)",
    '',
    optional(url('https:', 'http:')),
  ),
  auditHeadEveryEvents: key(
    'KENNEL_AUDIT_HEAD_EVERY_EVENTS',
    'sign a Merkle tree head at least every N events (R17)',
    '1000',
    int(1, 10_000_000),
  ),
  auditHeadEverySeconds: key(
    'KENNEL_AUDIT_HEAD_EVERY_SECONDS',
    'sign a Merkle tree head at least every T seconds when events arrived (R17)',
    '60',
    int(1, 86400),
  ),
  monitorAuthFailuresPerIp: key(
    'KENNEL_MONITOR_AUTH_FAILURES_PER_IP',
    'security monitor: failed device or account authentications from one IP that raise an alert, as count/window (R11)',
    '20/60s',
    threshold,
  ),
  monitorAuthFailuresPerCertificate: key(
    'KENNEL_MONITOR_AUTH_FAILURES_PER_CERTIFICATE',
    'security monitor: failed authentications with one certificate (R11)',
    '5/60s',
    threshold,
  ),
  monitorRevokedCertificateAttempts: key(
    'KENNEL_MONITOR_REVOKED_CERTIFICATE_ATTEMPTS',
    'security monitor: connection attempts with a revoked certificate or device (R11)',
    '1/3600s',
    threshold,
  ),
  monitorDenylistHits: key(
    'KENNEL_MONITOR_DENYLIST_HITS',
    'security monitor: connections refused by the denylist from one IP (R11)',
    '1/3600s',
    threshold,
  ),
  monitorRateLimitStorm: key(
    'KENNEL_MONITOR_RATE_LIMIT_STORM',
    'security monitor: rate-limit refusals across the service (R11)',
    '50/60s',
    threshold,
  ),
  monitorDownloadsPerDevice: key(
    'KENNEL_MONITOR_DOWNLOADS_PER_DEVICE',
    'security monitor: download URLs issued to one device (R11)',
    '30/3600s',
    threshold,
  ),
  monitorDownloadsPerAccount: key(
    'KENNEL_MONITOR_DOWNLOADS_PER_ACCOUNT',
    'security monitor: download URLs issued to one account (R11)',
    '100/3600s',
    threshold,
  ),
  monitorLoginIpsPerAccount: key(
    'KENNEL_MONITOR_LOGIN_IPS_PER_ACCOUNT',
    'security monitor: distinct IPs one account logs in from (R11)',
    '5/3600s',
    threshold,
  ),
  auditKey: key(
    'KENNEL_AUDIT_KEY',
    'Ed25519 private key (PEM file, mode 0600) that signs audit tree heads; generated in <data dir>/audit/ in development, required in production (R17)',
    '',
    optional(text),
  ),
} as const

type Keys = typeof configKeys
export type Config = { readonly [K in keyof Keys]: ReturnType<Keys[K]['parse']> } & {
  readonly eventStoreUrl: string
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const out: Record<string, unknown> = {}
  for (const [name, k] of Object.entries(configKeys) as [string, Key<unknown>][]) {
    const raw = env[k.env] ?? k.default
    out[name] = raw === undefined ? undefined : k.parse(raw.trim(), k.env)
  }
  const dataDir = path.resolve(out.dataDir as string)
  out.dataDir = dataDir
  const es = out.eventStore as string
  out.eventStoreUrl = es === 'sqlite:' ? `sqlite:${path.join(dataDir, 'events.sqlite')}` : es
  const config = Object.freeze(out) as Config
  assertRolesCanWork(config)
  if (config.env === 'production') assertProductionReady(config)
  return config
}

// An API sends to toys through a broker: its own, or any broker of the cluster through the shared
// Redis message bus (broker/inbox-publisher.ts). Without either its inbox messages would vanish.
function assertRolesCanWork(c: Config): void {
  if (c.roles.includes('api') && !c.roles.includes('broker') && c.redisUrl === undefined) {
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      `KENNEL_ROLES=${c.roles.join(',')} runs the API without a broker: set KENNEL_REDIS_URL (the API then sends to toys through the brokers' shared Redis) or add broker to KENNEL_ROLES`,
      { variable: 'KENNEL_ROLES' },
    )
  }
}

// R7, R8: production refuses plaintext, default secrets and development material.
function assertProductionReady(c: Config): void {
  const missing = (['tlsCert', 'tlsKey', 'caCert', 'caKey', 'masterKey'] as const).filter((k) => c[k] === undefined)
  if (missing.length > 0) {
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      `production requires ${missing.map((k) => configKeys[k].env).join(', ')}`,
    )
  }
  if (c.eventStoreUrl.startsWith('postgres')) {
    const u = new URL(c.eventStoreUrl)
    const ssl = u.searchParams.get('sslmode')
    if (!u.password || !ssl || !['require', 'verify-ca', 'verify-full'].includes(ssl)) {
      throw new KennelError(
        'KENNEL_ERR_CONFIG',
        'KENNEL_EVENTSTORE in production must authenticate (user:password@) and set sslmode=require|verify-ca|verify-full (R7)',
      )
    }
  }
  if (c.eventStoreUrl.startsWith('esdb') || c.eventStoreUrl.startsWith('kurrentdb')) {
    const u = new URL(c.eventStoreUrl)
    if (u.searchParams.get('tls') === 'false' || !u.password) {
      throw new KennelError('KENNEL_ERR_CONFIG', 'KENNEL_EVENTSTORE in production must use TLS and credentials (R7)')
    }
  }
  if (c.redisUrl !== undefined && !c.redisUrl.startsWith('rediss:')) {
    throw new KennelError('KENNEL_ERR_CONFIG', 'KENNEL_REDIS_URL in production must use rediss:// (TLS) (R7)')
  }
  if (c.smtpUrl === undefined) {
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      'KENNEL_SMTP_URL must be set in production: sign-up confirmations are mailed (the outbox is for development)',
    )
  }
  if (c.mailFrom === configKeys.mailFrom.default) {
    throw new KennelError('KENNEL_ERR_CONFIG', 'KENNEL_MAIL_FROM must be set in production')
  }
  if (c.securityContact === configKeys.securityContact.default) {
    throw new KennelError('KENNEL_ERR_CONFIG', 'KENNEL_SECURITY_CONTACT must be set in production (R10)')
  }
  // a wildcard bind address is no origin a client can reach: the API would hand out
  // https://0.0.0.0:8443/... recording URLs (R5, R13)
  if (c.publicUrl === undefined && WILDCARD_HOSTS.has(c.host)) {
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      `KENNEL_PUBLIC_URL must be set in production when KENNEL_HOST is ${c.host}: it is the origin of the URLs the API hands out`,
    )
  }
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]', '::0'])

/** The origin of the API's own URLs when KENNEL_PUBLIC_URL is unset: the listener's address and
 * the port it is bound to (with KENNEL_API_PORT=0, the real one). */
export function publicUrlOf(config: Pick<Config, 'publicUrl' | 'host'>, boundApiPort: number): string {
  if (config.publicUrl !== undefined) return config.publicUrl
  const host = config.host.includes(':') ? `[${config.host}]` : config.host
  return `https://${host}:${boundApiPort}`
}

/** Markdown table of every key, for the README. */
export function configTable(): string {
  const rows = Object.values(configKeys).map(
    (k) =>
      `| \`${k.env}\` | ${k.default === '' || k.default === undefined ? '(unset)' : `\`${k.default}\``} | ${k.doc} |`,
  )
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n')
}
