import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible'
import type { Redis } from 'ioredis'
import type { RateWindow } from '../../infra/config.ts'

// Request limits over several windows (R6): per certificate on the toys' routes
// (KENNEL_DEVICE_API_LIMITS: 60/minute, 200/hour, 400/day by default), per account on the bearer
// routes (KENNEL_ACCOUNT_API_LIMITS: 600/minute, 10,000/hour). Every window is consumed by each
// request; the first exhausted window refuses it.

export interface WindowRefusal {
  window: string
  retryAfterSeconds: number
}

export class WindowLimiter {
  private readonly limiters: Array<{ window: string; limiter: RateLimiterAbstract }>

  /** `name`: the limit's name, the prefix of its keys in Redis (`kennel-{name}-{window}`) */
  constructor(name: string, windows: readonly RateWindow[], redis?: Redis) {
    this.limiters = windows.map((w) => {
      const opts = { keyPrefix: `kennel-${name}-${w.label}`, points: w.points, duration: w.durationSeconds }
      return {
        window: `${w.points}/${w.label}`,
        limiter: redis
          ? new RateLimiterRedis({ ...opts, storeClient: redis, useRedisPackage: false })
          : new RateLimiterMemory(opts),
      }
    })
  }

  /** consumes every window at once (one round trip to Redis each, in parallel) */
  async consume(key: string): Promise<WindowRefusal | undefined> {
    const outcomes = await Promise.allSettled(this.limiters.map(({ limiter }) => limiter.consume(key)))
    let refusal: WindowRefusal | undefined
    outcomes.forEach((o, i) => {
      if (o.status === 'fulfilled') return
      if (!(o.reason instanceof RateLimiterRes)) throw o.reason
      const retryAfterSeconds = Math.max(1, Math.ceil(o.reason.msBeforeNext / 1000))
      if (!refusal || retryAfterSeconds > refusal.retryAfterSeconds)
        refusal = { window: this.limiters[i]!.window, retryAfterSeconds }
    })
    return refusal
  }
}
