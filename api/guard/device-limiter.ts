import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible'
import type { Redis } from 'ioredis'
import type { RateWindow } from '../../infra/config.ts'

// Per-certificate limits on device routes (R6): every window (60/minute, 200/hour, 400/day by
// default) is consumed by each request; the first exhausted window refuses it.

export interface DeviceLimitRefusal {
  window: string
  retryAfterSeconds: number
}

export class DeviceLimiter {
  private readonly limiters: Array<{ window: string; limiter: RateLimiterAbstract }>

  constructor(windows: readonly RateWindow[], redis?: Redis) {
    this.limiters = windows.map((w) => {
      const opts = { keyPrefix: `kennel-device-api-${w.label}`, points: w.points, duration: w.durationSeconds }
      return {
        window: `${w.points}/${w.label}`,
        limiter: redis
          ? new RateLimiterRedis({ ...opts, storeClient: redis, useRedisPackage: false })
          : new RateLimiterMemory(opts),
      }
    })
  }

  /** consumes every window at once (one round trip to Redis each, in parallel) */
  async consume(serial: string): Promise<DeviceLimitRefusal | undefined> {
    const outcomes = await Promise.allSettled(this.limiters.map(({ limiter }) => limiter.consume(serial)))
    let refusal: DeviceLimitRefusal | undefined
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
