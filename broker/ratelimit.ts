import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { Config, RateWindow } from '../infra/config.ts'
import type { RateLimitName } from './events.ts'

// R6: connects per device and per source IP, publishes and payload bytes per device. Each
// configured window ("10/minute,100/hour") is one limiter; a request passes only when every
// window has room. With Redis (cluster mode) the counts are shared by every broker; a Redis
// outage falls back to an in-memory limiter per process instead of refusing everyone.

export interface RateRefusal {
  ok: false
  limit: RateLimitName
  /** the window with the longest wait, e.g. "100/second" */
  window: string
  retryAfterMs: number
}
export type RateDecision = { ok: true } | RateRefusal

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

interface Window {
  window: string
  limiter: RateLimiterAbstract
}

function limiters(name: RateLimitName, windows: readonly RateWindow[], store: RateLimitStore): Window[] {
  return windows.map((w) => {
    const opts = { points: w.points, duration: w.durationSeconds, keyPrefix: `${store.prefix ?? 'kennel'}:rl:${name}:${w.label}` }
    const limiter = store.redis === undefined ? new RateLimiterMemory(opts) : new RateLimiterRedis({ ...opts, storeClient: store.redis, insuranceLimiter: new RateLimiterMemory(opts) })
    return { window: `${w.points}/${w.label}`, limiter }
  })
}

async function consumeAll(name: RateLimitName, ws: readonly Window[], key: string, points: number): Promise<RateDecision> {
  let refusal: RateRefusal | undefined
  await Promise.all(
    ws.map(({ window, limiter }) =>
      limiter.consume(key, points).catch((res: unknown) => {
        if (!(res instanceof RateLimiterRes)) throw res
        // a refusal stays one even when its window ends this very millisecond
        const retryAfterMs = Math.max(1, res.msBeforeNext)
        if (!refusal || retryAfterMs > refusal.retryAfterMs) refusal = { ok: false, limit: name, window, retryAfterMs }
      }),
    ),
  )
  return refusal ?? { ok: true }
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
