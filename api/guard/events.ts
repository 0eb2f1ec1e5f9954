// Refusals by the API's guards, in `security-{yyyy-mm-dd}` (docs/EVENTS.md) with the actor and
// credential that were refused (`device:{id}` / `cert:{serial}`, `account:{id}`, `anonymous`).

export interface RateLimitExceeded {
  type: 'RateLimitExceeded'
  data: {
    /** which limiter: device-api, login-account-ip, login-ip-day */
    limit: string
    /** e.g. "60/minute" */
    window?: string
    deviceId?: string
    serial?: string
    accountId?: string
    ip: string
    retryAfterSeconds: number
    /** refusals this event stands for: 1 when a block opens, then the rest of the block's (infra/net/folded-refusals.ts); absent in older events: 1 */
    refusals?: number
  }
}

export interface DeviceAuthRefused {
  type: 'DeviceAuthRefused'
  data: {
    deviceId?: string
    serial?: string
    /** SHA-256 of the certificate, hex, as in the broker's DeviceAuthFailed */
    fingerprint?: string
    reason: string
    ip: string
    route: string
    /** refusals this event stands for: 1 when a block opens, then the rest of the block's (infra/net/folded-refusals.ts) */
    attempts: number
  }
}

export interface ConnectionDenylisted {
  type: 'ConnectionDenylisted'
  /** hits: connections this event stands for: 1 when a block opens, then the rest of the block's */
  data: { ip: string; listener: 'api'; cidr: string; hits: number }
}

export interface ConnectionCapExceeded {
  type: 'ConnectionCapExceeded'
  /** connections refused on accept because their source (an IPv4 address or IPv6 /64) held `cap` connections without a request already; refusals: how many this event stands for, 1 when a block opens, then the rest of the block's */
  data: { ip: string; source: string; listener: 'api'; cap: number; refusals: number }
}

export type GuardEvent = RateLimitExceeded | DeviceAuthRefused | ConnectionDenylisted | ConnectionCapExceeded
