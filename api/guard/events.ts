// Refusals by the API's guards, in `security-{yyyy-mm-dd}` (docs/EVENTS.md) with the actor and
// credential that were refused (`device:{id}` / `cert:{serial}`, `account:{id}`, `anonymous`).
// Those it shares with the broker (RateLimitExceeded, ConnectionDenylisted, ConnectionCapExceeded)
// are one family in infra/net/events.ts, written with `listener: 'api'`.

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

export type GuardEvent = DeviceAuthRefused
