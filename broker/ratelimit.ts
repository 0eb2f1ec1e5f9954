import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { Config, RateWindow } from '../infra/config.ts'
import type { RateLimitName } from './events.ts'

// R6: connects per device and per source IP, publishes and payload bytes per device. Each
// configured window ("10/minute,100/hour") is one limiter; a request passes only when every
// window has room. With Redis (cluster mode) the counts are shared by every broker; a Redis
// outage falls back to an in-memory limiter per process instead of refusing everyone.

export type RateDecision = { ok: true } | { ok: false; limit: RateLimitName; retryAfterMs: number }

export interface BrokerRateLimits {
  connectDevice(deviceId: string): Promise<RateDecision>
  connectIp(ip: string): Promise<RateDecision>
  publish(deviceId: string, bytes: number): Promise<RateDecision>
}

export interface RateLimitStore {
  /** an ioredis client; absent = in memory */
  redis?: unknown
  /** key namespace, so that tests and deployments sharing a Redis do not count each other */
  prefix?: string
}

function limiters(name: RateLimitName, windows: readonly RateWindow[], store: RateLimitStore): RateLimiterAbstract[] {
  return windows.map((w) => {
    const opts = { points: w.points, duration: w.durationSeconds, keyPrefix: `${store.prefix ?? 'kennel'}:rl:${name}:${w.label}` }
    if (store.redis === undefined) return new RateLimiterMemory(opts)
    return new RateLimiterRedis({ ...opts, storeClient: store.redis, insuranceLimiter: new RateLimiterMemory(opts) })
  })
}

async function consumeAll(name: RateLimitName, ls: readonly RateLimiterAbstract[], key: string, points: number): Promise<RateDecision> {
  let retryAfterMs = 0
  await Promise.all(
    ls.map((l) =>
      l.consume(key, points).catch((res: unknown) => {
        if (!(res instanceof RateLimiterRes)) throw res
        retryAfterMs = Math.max(retryAfterMs, res.msBeforeNext)
      }),
    ),
  )
  return retryAfterMs > 0 ? { ok: false, limit: name, retryAfterMs } : { ok: true }
}

export function createRateLimits(config: Pick<Config, 'mqttConnectLimits' | 'mqttConnectIpLimits' | 'mqttPublishLimits' | 'mqttByteLimits'>, store: RateLimitStore = {}): BrokerRateLimits {
  const connectDevice = limiters('connect-device', config.mqttConnectLimits, store)
  const connectIp = limiters('connect-ip', config.mqttConnectIpLimits, store)
  const publishes = limiters('publish-device', config.mqttPublishLimits, store)
  const bytes = limiters('bytes-device', config.mqttByteLimits, store)
  return {
    connectDevice: (deviceId) => consumeAll('connect-device', connectDevice, deviceId, 1),
    connectIp: (ip) => consumeAll('connect-ip', connectIp, ip, 1),
    async publish(deviceId, n) {
      const count = await consumeAll('publish-device', publishes, deviceId, 1)
      if (!count.ok) return count
      // a payload larger than a whole window can never pass; zero-byte publishes cost nothing here
      return n === 0 ? count : consumeAll('bytes-device', bytes, deviceId, n)
    },
  }
}
