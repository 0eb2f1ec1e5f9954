// The events of the listeners' guards (R6, R9, R11), one family for the MQTT listener (broker/)
// and the HTTPS listener (api/): a refusal is the same fact whichever listener made it, so each
// has one shape, and `listener` says which one refused (docs/EVENTS.md). Defined here, beside
// the denylist, the cap on unauthenticated connections and the refusal folding they record,
// because infra/ is what broker/, api/, devices/ and projections/ may all import.
//
// Stored events keep the shape they were written in (the audit log hashes them as stored, R17).
// Every field the audit log and breach reports read (deviceId, serial, accountId) kept its name
// in every shape; what changed is read through the upcasters below, so a reader that
// weighs or shows these events (the monitor) gets the one shape from any of them.

export type Listener = 'mqtt' | 'api'

/** the broker's limits (broker/ratelimit.ts): connects per device and per address, publishes, bytes and subscription filters per device */
export type MqttRateLimit = 'connect-device' | 'connect-ip' | 'publish-device' | 'bytes-device' | 'subscribe-device'
/** the API's limits: device routes per certificate, bearer routes per account, the wait after failed logins (per account and address), failed logins per address and day */
export type ApiRateLimit = 'device-api' | 'account-api' | 'login-account-ip' | 'login-ip-day'
export type RateLimitName = MqttRateLimit | ApiRateLimit

export interface RateLimitExceeded {
  type: 'RateLimitExceeded'
  data: {
    listener: Listener
    limit: RateLimitName
    /** the window that refused, e.g. "100/second"; none for the login limits, which are waits */
    window?: string
    /** the toy refused: always on `mqtt`, on `api` for `device-api` */
    deviceId?: string
    serial?: string
    /** the account a refused login named, when it has one; the account whose requests `account-api` refused */
    accountId?: string
    ip: string
    retryAfterSeconds: number
    /** refusals this event stands for: 1 when a minute's block opens, then the rest of the block's (folded-refusals.ts) */
    refusals: number
  }
}

export interface ConnectionDenylisted {
  type: 'ConnectionDenylisted'
  data: {
    listener: Listener
    ip: string
    /** the source port of the latest connection it stands for, when the socket still knew it */
    port?: number
    /** the configured CIDR the address fell in (denylist.ts); absent only in the broker's events written before it was recorded */
    cidr?: string
    /** connections this event stands for: 1 for the first hit of a block, then the block's other hits, recorded when it ends */
    hits: number
  }
}

/** connections refused on accept because their source (an IPv4 address or IPv6 /64) held `cap`
 * unauthenticated connections already (unauthenticated.ts) */
export interface ConnectionCapExceeded {
  type: 'ConnectionCapExceeded'
  data: {
    listener: Listener
    ip: string
    source: string
    cap: number
    /** refusals this event stands for: 1 for the first of a block, then the block's others, recorded when it ends */
    refusals: number
  }
}

export type ListenerGuardEvent = RateLimitExceeded | ConnectionDenylisted | ConnectionCapExceeded

/** security events without a trusted identity, by UTC day: the guards' refusals of unknown
 * clients, failed authentications, rejected claim codes (appended by broker/, api/ and devices/) */
export const securityStream = (at: Date): string => `security-${at.toISOString().slice(0, 10)}`

// --- reading stored events of every shape ------------------------------------------------
// Every event of the one shape has `listener`: one without is of an earlier shape (so is the
// API's first ConnectionDenylisted, which had `listener` and `count`).

type Stored = Record<string, unknown>
const MQTT_LIMITS: ReadonlySet<string> = new Set<MqttRateLimit>([
  'connect-device',
  'connect-ip',
  'publish-device',
  'bytes-device',
])
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
const positive = (v: unknown): number | undefined => (typeof v === 'number' && v > 0 ? v : undefined)
const listenerOf = (v: unknown): Listener | undefined => (v === 'mqtt' || v === 'api' ? v : undefined)
const asStored = (data: unknown): Stored => (data !== null && typeof data === 'object' ? (data as Stored) : {})

/** A stored RateLimitExceeded's data in the one shape. Earlier shapes:
 * - the broker's first: `key` (the device or address counted) and `retryAfterMs`, no window, one refusal each;
 * - the broker's and the API's before `listener`: the API's limits named the API, the broker's the broker;
 *   the API's first events had no `refusals`: one each. */
export function rateLimitExceededData(data: unknown): RateLimitExceeded['data'] {
  const d = asStored(data)
  const limit = (str(d.limit) ?? '') as RateLimitName
  const retryAfterMs = positive(d.retryAfterMs)
  const read: RateLimitExceeded['data'] = {
    listener: listenerOf(d.listener) ?? (MQTT_LIMITS.has(limit) ? 'mqtt' : 'api'),
    limit,
    ip: str(d.ip) ?? '',
    retryAfterSeconds:
      positive(d.retryAfterSeconds) ?? (retryAfterMs !== undefined ? Math.max(1, Math.ceil(retryAfterMs / 1000)) : 0),
    refusals: positive(d.refusals) ?? 1,
  }
  for (const field of ['window', 'deviceId', 'serial', 'accountId'] as const) {
    const v = str(d[field])
    if (v !== undefined) read[field] = v
  }
  return read
}

/** A stored ConnectionDenylisted's data in the one shape. Earlier shapes:
 * - the broker's: no `listener` (it is `mqtt`) and no `cidr`;
 * - the API's first: `count`, the address's running total since the process started, not the
 *   hits the event stands for, so it weighs 1 as it always did. */
export function connectionDenylistedData(data: unknown): ConnectionDenylisted['data'] {
  const d = asStored(data)
  const port = positive(d.port)
  const cidr = str(d.cidr)
  return {
    listener: listenerOf(d.listener) ?? 'mqtt',
    ip: str(d.ip) ?? '',
    ...(port !== undefined ? { port } : {}),
    ...(cidr !== undefined ? { cidr } : {}),
    hits: positive(d.hits) ?? 1,
  }
}
