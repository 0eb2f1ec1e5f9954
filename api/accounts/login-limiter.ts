import {
  RateLimiterMemory,
  RateLimiterRedis,
  type RateLimiterAbstract,
  type RateLimiterRes,
} from 'rate-limiter-flexible'
import type { Redis } from 'ioredis'

// Brute-force protection for logins (R6) that cannot be turned against the account's owner. Per
// (account, IP) the first `freeFailures` failed logins are answered at once; after them each
// attempt must wait a delay that doubles with every further failure (1 s, 2 s, 4 s, … up to
// `maxDelaySeconds`), and attempts made while waiting get 429 without the password being checked
// (they do not lengthen the wait). So guessing stays slow, while the owner, even from the
// attacker's address, waits seconds or minutes, never an hour. Failures per IP per day are capped
// across accounts. A success resets its (account, IP); `kennel account unblock` starts a new
// count through the keys (`loginKeys`). Both stores (memory, Redis) are rate-limiter-flexible's.

export interface LoginLimits {
  freeFailures: number
  firstDelaySeconds: number
  maxDelaySeconds: number
  ipDailyFailures: number
}

export interface LoginBlock {
  retryAfterSeconds: number
  limit: 'login-account-ip' | 'login-ip-day'
}

/** the wait imposed after the `failures`-th consecutive failure */
export function loginDelaySeconds(
  failures: number,
  limits: Pick<LoginLimits, 'freeFailures' | 'firstDelaySeconds' | 'maxDelaySeconds'>,
): number {
  if (failures < limits.freeFailures) return 0
  const doublings = Math.min(failures - limits.freeFailures, 30)
  return Math.min(limits.maxDelaySeconds, limits.firstDelaySeconds * 2 ** doublings)
}

/** how many times `kennel account unblock` lifted the limits (LoginBlockLifted, accounts read model) */
export interface LoginLifts {
  /** for the account at every address */
  account: number
  /** for the account at this address */
  accountIp: number
  /** the address's daily count */
  ip: number
}

export interface LoginKeys {
  accountIp: string
  ip: string
}

/** an IPv4 address seen through an IPv6 socket is the same address */
export const normaliseIp = (ip: string): string => ip.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1')

/** a lift makes new keys, so every API process following the store forgets the old counts at
 * once, on memory and Redis alike, without knowing which keys existed */
export function loginKeys(emailHash: string, ip: string, lifts: LoginLifts): LoginKeys {
  const addr = normaliseIp(ip)
  return { accountIp: `${emailHash}_${addr}_${lifts.account}.${lifts.accountIp}`, ip: `${addr}_${lifts.ip}` }
}

// consecutive failures are remembered for a day from the first: past the cap that is about one
// guess per `maxDelaySeconds`, and the daily per-IP cap bounds it across accounts
const FAILURE_MEMORY_SECONDS = 24 * 60 * 60

export class LoginLimiter {
  private readonly failures: RateLimiterAbstract
  private readonly waits: RateLimiterAbstract
  private readonly byIp: RateLimiterAbstract

  constructor(
    private readonly limits: LoginLimits,
    redis?: Redis,
  ) {
    const make = (keyPrefix: string, points: number, duration: number): RateLimiterAbstract =>
      redis
        ? new RateLimiterRedis({ storeClient: redis, keyPrefix, points, duration, useRedisPackage: false })
        : new RateLimiterMemory({ keyPrefix, points, duration })
    // only counted (penalty) and read (get): the points are never consumed
    this.failures = make('kennel-login-failures', 1, FAILURE_MEMORY_SECONDS)
    // a key blocked for the current delay (block)
    this.waits = make('kennel-login-wait', 1, 1)
    this.byIp = make('kennel-login-fail-ip-day', limits.ipDailyFailures, 24 * 60 * 60)
  }

  /** checked before the password is, so a caller who must wait learns nothing from trying */
  async blocked(keys: LoginKeys): Promise<LoginBlock | undefined> {
    const [wait, ip] = await Promise.all([this.waits.get(keys.accountIp), this.byIp.get(keys.ip)])
    if (ip && ip.consumedPoints >= this.byIp.points) return { limit: 'login-ip-day', retryAfterSeconds: seconds(ip) }
    if (wait && wait.consumedPoints > this.waits.points && wait.msBeforeNext > 0)
      return { limit: 'login-account-ip', retryAfterSeconds: seconds(wait) }
    return undefined
  }

  /** counts a failure; returns the wait it imposes before the next attempt (0: none) */
  async failed(keys: LoginKeys): Promise<number> {
    const [count] = await Promise.all([this.failures.penalty(keys.accountIp, 1), this.byIp.penalty(keys.ip, 1)])
    const delay = loginDelaySeconds(count.consumedPoints, this.limits)
    if (delay > 0) await this.waits.block(keys.accountIp, delay)
    return delay
  }

  async succeeded(keys: LoginKeys): Promise<void> {
    await Promise.all([this.failures.delete(keys.accountIp), this.waits.delete(keys.accountIp)])
  }
}

function seconds(res: RateLimiterRes): number {
  return Math.max(1, Math.ceil(res.msBeforeNext / 1000))
}
