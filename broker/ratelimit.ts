import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { Config, RateWindow } from '../infra/config.ts'
import type { MqttRateLimit } from '../infra/net/events.ts'

// R6: connects per device and per source IP, publishes, payload bytes and subscription filters
// per device (each filter is an event and an entry in the broker's memory). Each
// configured window ("10/minute,100/hour") is one limiter; a request passes only when every
// window has room. With Redis (cluster mode) the counts are shared by every broker; a Redis
// outage falls back to an in-memory limiter per process instead of refusing everyone.
//
// In one process (no Redis) the counts are MemoryWindows: the semantics of rate-limiter-flexible's
// RateLimiterMemory (a fixed window from a key's first request; refused requests count too)
// answered synchronously, so that a publish is not held for a promise per window, and expired
// keys swept once per window instead of a timer per key.

export interface RateRefusal {
  ok: false
  limit: MqttRateLimit
  /** the window with the longest wait, e.g. "100/second" */
  window: string
  retryAfterMs: number
}
export type RateDecision = { ok: true } | RateRefusal

export interface BrokerRateLimits {
  connectDevice(deviceId: string): Promise<RateDecision>
  connectIp(ip: string): Promise<RateDecision>
  /** synchronous when counted in this process, a promise when counted in Redis */
  publish(deviceId: string, bytes: number): RateDecision | Promise<RateDecision>
  /** one subscription filter of a SUBSCRIBE */
  subscribe(deviceId: string): RateDecision | Promise<RateDecision>
}

export interface RateLimitStore {
  /** an ioredis client; absent = in memory */
  redis?: unknown
  /** key namespace, so that tests and deployments sharing a Redis do not count each other */
  prefix?: string
}

const PASS: RateDecision = Object.freeze({ ok: true })

/** One window of one limit, counted in this process. */
export class MemoryWindow {
  private readonly counts = new Map<string, { value: number; expiresAt: number }>()
  private nextSweep = 0

  constructor(
    readonly window: string,
    private readonly points: number,
    private readonly durationMs: number,
  ) {}

  /** counts `points` for `key`; 0 when within the limit, else the milliseconds until the window ends */
  consume(key: string, points: number, now: number): number {
    if (now >= this.nextSweep) this.sweep(now)
    const count = this.counts.get(key)
    if (count === undefined || count.expiresAt <= now) {
      this.counts.set(key, { value: points, expiresAt: now + this.durationMs })
      return points > this.points ? this.durationMs : 0
    }
    count.value += points
    return count.value > this.points ? count.expiresAt - now : 0
  }

  /** keys counted (expired ones are dropped at most one window late) */
  get size(): number {
    return this.counts.size
  }

  private sweep(now: number): void {
    for (const [key, count] of this.counts) if (count.expiresAt <= now) this.counts.delete(key)
    this.nextSweep = now + this.durationMs
  }
}

function memoryWindows(windows: readonly RateWindow[]): MemoryWindow[] {
  return windows.map((w) => new MemoryWindow(`${w.points}/${w.label}`, w.points, w.durationSeconds * 1000))
}

function consumeMemory(name: MqttRateLimit, ws: readonly MemoryWindow[], key: string, points: number): RateDecision {
  const now = Date.now()
  let refusal: RateRefusal | undefined
  // every window counts the request, as the Redis path does
  for (const w of ws) {
    const waitMs = w.consume(key, points, now)
    if (waitMs > 0 && (!refusal || waitMs > refusal.retryAfterMs))
      refusal = { ok: false, limit: name, window: w.window, retryAfterMs: waitMs }
  }
  return refusal ?? PASS
}

interface RedisWindow {
  window: string
  limiter: RateLimiterAbstract
}

function redisWindows(name: MqttRateLimit, windows: readonly RateWindow[], store: RateLimitStore): RedisWindow[] {
  return windows.map((w) => {
    const opts = {
      points: w.points,
      duration: w.durationSeconds,
      keyPrefix: `${store.prefix ?? 'kennel'}:rl:${name}:${w.label}`,
    }
    return {
      window: `${w.points}/${w.label}`,
      limiter: new RateLimiterRedis({
        ...opts,
        storeClient: store.redis,
        insuranceLimiter: new RateLimiterMemory(opts),
      }),
    }
  })
}

async function consumeRedis(
  name: MqttRateLimit,
  ws: readonly RedisWindow[],
  key: string,
  points: number,
): Promise<RateDecision> {
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
  return refusal ?? PASS
}

type Limits = Pick<
  Config,
  'mqttConnectLimits' | 'mqttConnectIpLimits' | 'mqttPublishLimits' | 'mqttByteLimits' | 'mqttSubscribeLimits'
>

export function createRateLimits(config: Limits, store: RateLimitStore = {}): BrokerRateLimits {
  return store.redis === undefined ? memoryRateLimits(config) : redisRateLimits(config, store)
}

function memoryRateLimits(config: Limits): BrokerRateLimits {
  const connectDevice = memoryWindows(config.mqttConnectLimits)
  const connectIp = memoryWindows(config.mqttConnectIpLimits)
  const publishes = memoryWindows(config.mqttPublishLimits)
  const bytes = memoryWindows(config.mqttByteLimits)
  const subscribes = memoryWindows(config.mqttSubscribeLimits)
  return {
    connectDevice: async (deviceId) => consumeMemory('connect-device', connectDevice, deviceId, 1),
    connectIp: async (ip) => consumeMemory('connect-ip', connectIp, ip, 1),
    publish(deviceId, n) {
      const count = consumeMemory('publish-device', publishes, deviceId, 1)
      // a payload larger than a whole window can never pass; zero-byte publishes cost nothing here
      return !count.ok || n === 0 ? count : consumeMemory('bytes-device', bytes, deviceId, n)
    },
    subscribe: (deviceId) => consumeMemory('subscribe-device', subscribes, deviceId, 1),
  }
}

function redisRateLimits(config: Limits, store: RateLimitStore): BrokerRateLimits {
  const connectDevice = redisWindows('connect-device', config.mqttConnectLimits, store)
  const connectIp = redisWindows('connect-ip', config.mqttConnectIpLimits, store)
  const publishes = redisWindows('publish-device', config.mqttPublishLimits, store)
  const bytes = redisWindows('bytes-device', config.mqttByteLimits, store)
  const subscribes = redisWindows('subscribe-device', config.mqttSubscribeLimits, store)
  return {
    connectDevice: (deviceId) => consumeRedis('connect-device', connectDevice, deviceId, 1),
    connectIp: (ip) => consumeRedis('connect-ip', connectIp, ip, 1),
    async publish(deviceId, n) {
      const count = await consumeRedis('publish-device', publishes, deviceId, 1)
      return !count.ok || n === 0 ? count : consumeRedis('bytes-device', bytes, deviceId, n)
    },
    subscribe: (deviceId) => consumeRedis('subscribe-device', subscribes, deviceId, 1),
  }
}
