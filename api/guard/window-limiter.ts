import type { FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible'
import type { RateWindow } from '../../infra/config.ts'
import { KennelError } from '../../infra/errors.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'
import { type RateLimitExceeded, securityStream } from '../../infra/net/events.ts'
import { FoldedRefusals } from '../../infra/net/folded-refusals.ts'
import type { ApiMetrics } from '../metrics.ts'

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

export interface RequestLimitDeps {
  store: Pick<EventStore, 'append'>
  now(): Date
  metrics: Pick<ApiMetrics, 'rateLimited'>
  redis?: Redis
}

/** whom a refused request was from, as its RateLimitExceeded records it */
export interface Limited {
  data: Pick<RateLimitExceeded['data'], 'deviceId' | 'serial' | 'accountId'>
  metadata: Record<string, string>
}

const REFUSAL_EVENT_BLOCK_MS = 60_000

/** A WindowLimiter whose refusals answer 429 and are recorded (R6, R11): one RateLimitExceeded
 * per key and window per minute, the rest of a flood counted and recorded with the next one or
 * by flush() when the API stops. */
export class RequestLimit {
  private readonly windows: WindowLimiter
  private readonly folded: FoldedRefusals<{
    req: FastifyRequest
    event: RateLimitExceeded
    metadata: Record<string, string>
  }>

  /** `per`: what a key names, for the message ("certificate", "account") */
  constructor(
    private readonly name: 'device-api' | 'account-api',
    private readonly per: string,
    windows: readonly RateWindow[],
    private readonly deps: RequestLimitDeps,
  ) {
    this.windows = new WindowLimiter(name, windows, deps.redis)
    this.folded = new FoldedRefusals(REFUSAL_EVENT_BLOCK_MS, ({ req, event, metadata }, refusals) =>
      this.append({ ...event, data: { ...event.data, refusals } }, metadata).catch((err: unknown) =>
        req.log.error({ err }, `could not record requests refused by the ${name} limit`),
      ),
    )
  }

  /** counts one request of `key`; over a window, KENNEL_ERR_RATE_LIMITED (429, Retry-After) */
  async admit(req: FastifyRequest, key: string, who: Limited): Promise<void> {
    const refusal = await this.windows.consume(key)
    if (!refusal) return
    this.deps.metrics.rateLimited.inc({ limit: this.name })
    const event: RateLimitExceeded = {
      type: 'RateLimitExceeded',
      data: {
        listener: 'api',
        limit: this.name,
        window: refusal.window,
        ...who.data,
        ip: req.ip,
        retryAfterSeconds: refusal.retryAfterSeconds,
        refusals: 1,
      },
    }
    const at = this.deps.now().getTime()
    if (this.folded.count(`${key}:${refusal.window}`, at, { req, event, metadata: who.metadata }))
      await this.append(event, who.metadata)
    throw new KennelError(
      'KENNEL_ERR_RATE_LIMITED',
      `rate limit ${refusal.window} per ${this.per} exceeded; retry in ${refusal.retryAfterSeconds} s`,
      { retryAfterSeconds: refusal.retryAfterSeconds },
    )
  }

  flush(): Promise<void> {
    return this.folded.flush()
  }

  private append(event: RateLimitExceeded, metadata: Record<string, string>): Promise<void> {
    return this.deps.store.append(securityStream(this.deps.now()), [{ ...event, metadata }]).then(() => undefined)
  }
}
