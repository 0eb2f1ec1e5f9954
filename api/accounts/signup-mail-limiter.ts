import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible'
import type { Redis } from 'ioredis'

// Sign-up sends a mail to any address it is given, known or not (R15), so without a cap anyone
// could make kennel flood a mailbox. Mails per address (by its lookup hash) per hour are limited;
// over the cap the sign-up is answered as always and no mail is sent.

export class SignupMailLimiter {
  private readonly perAddress: RateLimiterAbstract

  constructor(mailsPerHour: number, redis?: Redis) {
    const opts = { keyPrefix: 'kennel-signup-mail', points: mailsPerHour, duration: 3600 }
    this.perAddress = redis
      ? new RateLimiterRedis({ ...opts, storeClient: redis, useRedisPackage: false })
      : new RateLimiterMemory(opts)
  }

  /** undefined when a mail may go out (and counts it), otherwise the seconds until one may */
  async consume(emailHash: string): Promise<number | undefined> {
    try {
      await this.perAddress.consume(emailHash)
      return undefined
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err
      return Math.max(1, Math.ceil(err.msBeforeNext / 1000))
    }
  }
}
