import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible'
import type { Redis } from 'ioredis'

// Brute-force protection for logins (R6), the rate-limiter-flexible "login endpoint" pattern:
// consecutive failures per (account, IP), reset by a success, and failures per IP per day.
// Both are checked before the password is, so a blocked caller learns nothing from trying.

export interface LoginLimits {
  consecutiveFailures: number
  ipDailyFailures: number
}

export interface LoginBlock {
  retryAfterSeconds: number
  limit: 'login-account-ip' | 'login-ip-day'
}

export class LoginLimiter {
  private readonly byAccountIp: RateLimiterAbstract
  private readonly byIp: RateLimiterAbstract

  constructor(limits: LoginLimits, redis?: Redis) {
    const make = (keyPrefix: string, points: number, duration: number): RateLimiterAbstract =>
      redis ? new RateLimiterRedis({ storeClient: redis, keyPrefix, points, duration, useRedisPackage: false }) : new RateLimiterMemory({ keyPrefix, points, duration })
    this.byAccountIp = make('kennel-login-fail-account-ip', limits.consecutiveFailures, 60 * 60)
    this.byIp = make('kennel-login-fail-ip-day', limits.ipDailyFailures, 24 * 60 * 60)
  }

  async blocked(emailHash: string, ip: string): Promise<LoginBlock | undefined> {
    const [a, i] = await Promise.all([this.byAccountIp.get(`${emailHash}_${ip}`), this.byIp.get(ip)])
    if (i && i.consumedPoints >= this.byIp.points) return { limit: 'login-ip-day', retryAfterSeconds: seconds(i) }
    if (a && a.consumedPoints >= this.byAccountIp.points) return { limit: 'login-account-ip', retryAfterSeconds: seconds(a) }
    return undefined
  }

  async failed(emailHash: string, ip: string): Promise<void> {
    await Promise.all([this.byAccountIp.penalty(`${emailHash}_${ip}`, 1), this.byIp.penalty(ip, 1)])
  }

  async succeeded(emailHash: string, ip: string): Promise<void> {
    await this.byAccountIp.delete(`${emailHash}_${ip}`)
  }
}

function seconds(res: RateLimiterRes): number {
  return Math.max(1, Math.ceil(res.msBeforeNext / 1000))
}
