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
  }
}

export interface DeviceAuthRefused {
  type: 'DeviceAuthRefused'
  data: { deviceId?: string; serial?: string; reason: string; ip: string; route: string }
}

export interface ConnectionDenylisted {
  type: 'ConnectionDenylisted'
  data: { ip: string; listener: 'api'; cidr: string; count: number }
}

export type GuardEvent = RateLimitExceeded | DeviceAuthRefused | ConnectionDenylisted
