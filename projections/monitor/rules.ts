import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { connectionDenylistedData, rateLimitExceededData } from '../../infra/net/events.ts'

// The monitor's rules (R11): each names the events it counts, the key it counts them by and how
// much each weighs; a rule fires when its measure within a sliding window of event times reaches
// the threshold. Thresholds and windows are configurable; the defaults suit a small fleet.

export interface Threshold {
  count: number
  windowSeconds: number
}

export type RuleName =
  | 'auth-failures-per-ip'
  | 'auth-failures-per-certificate'
  | 'revoked-certificate-attempt'
  | 'denylist-hits'
  | 'rate-limit-storm'
  | 'download-volume-per-device'
  | 'download-volume-per-account'
  | 'login-ips-per-account'

export type MonitorThresholds = Record<RuleName, Threshold>

export const defaultThresholds: MonitorThresholds = {
  'auth-failures-per-ip': { count: 20, windowSeconds: 60 },
  'auth-failures-per-certificate': { count: 5, windowSeconds: 60 },
  'revoked-certificate-attempt': { count: 1, windowSeconds: 3600 },
  'denylist-hits': { count: 1, windowSeconds: 3600 },
  'rate-limit-storm': { count: 50, windowSeconds: 60 },
  'download-volume-per-device': { count: 30, windowSeconds: 3600 },
  'download-volume-per-account': { count: 100, windowSeconds: 3600 },
  'login-ips-per-account': { count: 5, windowSeconds: 3600 },
}

/** one observation: counted under `key`; `weight` adds to a sum, `distinct` counts distinct values */
export interface Observation {
  key: string
  weight?: number
  distinct?: string
}

export interface Rule {
  name: RuleName
  severity: 'warning' | 'critical'
  eventTypes: readonly string[]
  observe(e: RecordedEvent): Observation | undefined
  describe(key: string, count: number, t: Threshold): string
}

type Data = Record<string, unknown>
const s = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
const data = (e: RecordedEvent): Data => (e.data ?? {}) as Data
const ipOf = (e: RecordedEvent): string | undefined => s(data(e).ip) ?? s(e.metadata.sourceIp)
const actorOf = (e: RecordedEvent, kind: string): string | undefined => {
  const a = s(e.metadata.actor)
  return a?.startsWith(`${kind}:`) ? a.slice(kind.length + 1) : undefined
}
const REVOKED = new Set(['certificate-revoked', 'device-revoked'])
/** how many refused authentications an event stands for: the API folds a burst into one
 * DeviceAuthRefused with `attempts`; the broker's DeviceAuthFailed is one each */
const attemptsOf = (e: RecordedEvent): number => (Number(data(e).attempts) > 0 ? Number(data(e).attempts) : 1)
/** refused device authentications: the broker's (MQTT) and the API's (HTTPS device routes) */
const DEVICE_AUTH_FAILURES = ['DeviceAuthFailed', 'DeviceAuthRefused'] as const

export const rules: readonly Rule[] = [
  {
    name: 'auth-failures-per-ip',
    severity: 'warning',
    eventTypes: [...DEVICE_AUTH_FAILURES, 'LoginFailed'],
    observe: (e) => (ipOf(e) ? { key: ipOf(e)!, weight: attemptsOf(e) } : undefined),
    describe: (key, n, t) => `${n} failed authentications from ${key} within ${t.windowSeconds} s`,
  },
  {
    name: 'auth-failures-per-certificate',
    severity: 'warning',
    eventTypes: DEVICE_AUTH_FAILURES,
    observe: (e) => {
      const key = s(data(e).fingerprint) ?? s(data(e).serial)
      return key ? { key, weight: attemptsOf(e) } : undefined
    },
    describe: (key, n, t) => `${n} failed authentications with certificate ${key} within ${t.windowSeconds} s`,
  },
  {
    name: 'revoked-certificate-attempt',
    severity: 'critical',
    eventTypes: DEVICE_AUTH_FAILURES,
    observe: (e) => {
      if (!REVOKED.has(String(data(e).reason))) return undefined
      const key = s(data(e).serial) ?? s(data(e).fingerprint) ?? s(data(e).deviceId) ?? ipOf(e)
      return key ? { key, weight: attemptsOf(e) } : undefined
    },
    describe: (key, n) => `${n} connection attempt(s) with revoked certificate or device ${key}`,
  },
  {
    name: 'denylist-hits',
    severity: 'warning',
    eventTypes: ['ConnectionDenylisted'],
    // the hits it stands for, read from any stored shape (infra/net/events.ts)
    observe: (e) => (ipOf(e) ? { key: ipOf(e)!, weight: connectionDenylistedData(e.data).hits } : undefined),
    describe: (key, n, t) => `${n} connection(s) from denylisted ${key} within ${t.windowSeconds} s`,
  },
  {
    name: 'rate-limit-storm',
    severity: 'warning',
    eventTypes: ['RateLimitExceeded'],
    // the refusals it stands for, read from any stored shape (infra/net/events.ts)
    observe: (e) => ({ key: 'all', weight: rateLimitExceededData(e.data).refusals }),
    describe: (_key, n, t) => `${n} rate-limit refusals within ${t.windowSeconds} s`,
  },
  {
    name: 'download-volume-per-device',
    severity: 'warning',
    eventTypes: ['DownloadUrlIssued'],
    observe: (e) => (actorOf(e, 'device') ? { key: actorOf(e, 'device')! } : undefined),
    describe: (key, n, t) => `device ${key} obtained ${n} download URLs within ${t.windowSeconds} s`,
  },
  {
    name: 'download-volume-per-account',
    severity: 'warning',
    eventTypes: ['DownloadUrlIssued'],
    observe: (e) => (actorOf(e, 'account') ? { key: actorOf(e, 'account')! } : undefined),
    describe: (key, n, t) => `account ${key} obtained ${n} download URLs within ${t.windowSeconds} s`,
  },
  {
    name: 'login-ips-per-account',
    severity: 'warning',
    // SessionStarted is the API's successful login; LoginSucceeded is accepted as an alias
    eventTypes: ['SessionStarted', 'LoginSucceeded'],
    observe: (e) => {
      const account = s(data(e).accountId)
      // the API seals a person's address (R12); its tag tells the addresses apart
      const ip = ipOf(e) ?? s(e.metadata.sourceIpTag)
      return account && ip ? { key: account, distinct: ip } : undefined
    },
    describe: (key, n, t) => `account ${key} logged in from ${n} different IPs within ${t.windowSeconds} s`,
  },
]
