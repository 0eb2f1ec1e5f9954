// What each kennel task is given (R8): plain settings as environment variables, every secret
// from Secrets Manager by reference (ECS injects it when the task starts; the template and the
// task definition never hold the value).
//
// kennel reads its private keys from files of mode 0600 (assertPrivateFile) and its database and
// Redis passwords inside KENNEL_EVENTSTORE / KENNEL_REDIS_URL, so a short entrypoint writes the
// key files under umask 077, composes the two URLs, drops the raw secrets from the environment
// and execs `kennel start`. The generated passwords contain no URL-special characters
// (URL_UNSAFE below), so composing needs no escaping.

/** every object key kennel writes starts with this (newObjectKey: `rec-<40 hex>`); the task role reaches nothing else */
export const RECORDINGS_PREFIX = 'rec-'

/** key material kept in Secrets Manager under the stack's secrets prefix, written to files at start */
export const KEY_FILES = [
  { env: 'KENNEL_TLS_CERT', secret: 'server-tls-cert', variable: 'PEM_SERVER_CERT', file: '/run/kennel/server.crt' },
  { env: 'KENNEL_TLS_KEY', secret: 'server-tls-key', variable: 'PEM_SERVER_KEY', file: '/run/kennel/server.key' },
  {
    env: 'KENNEL_CA_CERT',
    secret: 'device-ca-cert',
    variable: 'PEM_DEVICE_CA_CERT',
    file: '/run/kennel/device-ca.crt',
  },
  { env: 'KENNEL_CA_KEY', secret: 'device-ca-key', variable: 'PEM_DEVICE_CA_KEY', file: '/run/kennel/device-ca.key' },
  { env: 'KENNEL_AUDIT_KEY', secret: 'audit-key', variable: 'PEM_AUDIT_KEY', file: '/run/kennel/audit.key' },
] as const

/** secrets that are kennel settings as they are; the SMTP URL holds the relay's password */
export const SECRET_SETTINGS = [
  { env: 'KENNEL_MASTER_KEY', secret: 'master-key' },
  { env: 'KENNEL_SMTP_URL', secret: 'smtp-url' },
] as const

/** the parts of the two connection URLs that come from generated secrets */
export const URL_SECRETS = { dbUser: 'DB_USER', dbPassword: 'DB_PASSWORD', redisToken: 'REDIS_AUTH_TOKEN' } as const

/** characters a generated password must not contain, so it can sit in a URL as it is */
export const URL_UNSAFE = ' !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'

export interface Endpoints {
  dbHost: string
  dbPort: string
  redisHost: string
  redisPort: string
  /** the Amazon RDS CA bundle inside the image, for sslmode=verify-full */
  rdsCaBundle: string
}

/** the shell script the container runs (sh -c); its `export` lines are read back by the checks */
export function entrypoint(): string {
  const { dbUser, dbPassword, redisToken } = URL_SECRETS
  return [
    'set -eu',
    'umask 077',
    'mkdir -p /run/kennel',
    ...KEY_FILES.map((k) => `printf '%s\\n' "$${k.variable}" > ${k.file}`),
    // verify-full: TLS with the server certificate checked against the RDS CA and the host name (R7)
    `export KENNEL_EVENTSTORE="postgres://$${dbUser}:$${dbPassword}@$DB_HOST:$DB_PORT/kennel?sslmode=verify-full&sslrootcert=$RDS_CA_BUNDLE&schema=kennel"`,
    // rediss: TLS to ElastiCache, AUTH with the generated token (R7)
    `export KENNEL_REDIS_URL="rediss://:$${redisToken}@$REDIS_HOST:$REDIS_PORT"`,
    `unset ${[...KEY_FILES.map((k) => k.variable), dbUser, dbPassword, redisToken].join(' ')}`,
    'exec node dist/bin/kennel.js start',
  ].join('\n')
}

export interface Settings {
  bucketName: string
  region: string
  kmsKeyArn: string
  retentionDays: number
  securityContact: string
  alertWebhook: string | undefined
  /** KENNEL_PUBLIC_URL: the https origin clients reach the NLB at */
  publicUrl: string
  /** KENNEL_MAIL_FROM: the sender of sign-up confirmations */
  mailFrom: string
}

/** the plain (non-secret) environment of every kennel task */
export function environment(s: Settings, e: Endpoints): Record<string, string> {
  return {
    KENNEL_ENV: 'production',
    // the NLB reaches the task on its VPC address; the security group admits only the NLB (R14)
    KENNEL_HOST: '0.0.0.0',
    KENNEL_MQTT_PORT: '8883',
    KENNEL_API_PORT: '8443',
    // 0.0.0.0 is no origin to hand out: the API's URLs and security.txt's Canonical start with
    // the name clients reach the NLB at (R5, R10, R13)
    KENNEL_PUBLIC_URL: s.publicUrl,
    // bound to 127.0.0.1 by kennel; no port mapping, listener or rule exposes it (R11)
    KENNEL_METRICS_PORT: '9464',
    KENNEL_S3_BUCKET: s.bucketName,
    KENNEL_S3_REGION: s.region,
    // presigned PUTs carry this key id, so uploads are SSE-KMS with the bucket's key (R12)
    KENNEL_S3_KMS_KEY_ID: s.kmsKeyArn,
    // the same number as the bucket's lifecycle rule
    KENNEL_RETENTION_RECORDINGS_DAYS: String(s.retentionDays),
    KENNEL_SECURITY_CONTACT: s.securityContact,
    ...(s.alertWebhook === undefined ? {} : { KENNEL_ALERT_WEBHOOK: s.alertWebhook }),
    // sign-up confirmations (R15) leave through KENNEL_SMTP_URL, a container secret
    KENNEL_MAIL_FROM: s.mailFrom,
    ...Object.fromEntries(KEY_FILES.map((k) => [k.env, k.file])),
    DB_HOST: e.dbHost,
    DB_PORT: e.dbPort,
    REDIS_HOST: e.redisHost,
    REDIS_PORT: e.redisPort,
    RDS_CA_BUNDLE: e.rdsCaBundle,
  }
}
