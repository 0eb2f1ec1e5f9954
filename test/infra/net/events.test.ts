import t from 'tap'
import { connectionDenylistedData, rateLimitExceededData } from '../../../infra/net/events.ts'

// The listeners' refusals have one shape (infra/net/events.ts); stores hold every shape kennel
// ever wrote, and each reads as the one shape, weighing what it weighed when it was written.

t.test('every stored shape of RateLimitExceeded reads as the one shape', async (t) => {
  t.same(
    rateLimitExceededData({
      limit: 'connect-ip',
      key: '192.0.2.7',
      ip: '192.0.2.7',
      deviceId: 'toy-1',
      retryAfterMs: 1500,
    }),
    { listener: 'mqtt', limit: 'connect-ip', ip: '192.0.2.7', deviceId: 'toy-1', retryAfterSeconds: 2, refusals: 1 },
    "the broker's first shape: key and retryAfterMs, one refusal each",
  )
  t.same(
    rateLimitExceededData({
      limit: 'publish-device',
      window: '100/second',
      deviceId: 'toy-1',
      serial: 'ab01',
      ip: '192.0.2.7',
      retryAfterSeconds: 1,
      refusals: 40,
    }),
    {
      listener: 'mqtt',
      limit: 'publish-device',
      window: '100/second',
      deviceId: 'toy-1',
      serial: 'ab01',
      ip: '192.0.2.7',
      retryAfterSeconds: 1,
      refusals: 40,
    },
    "the broker's folded shape, before listener",
  )
  t.same(
    rateLimitExceededData({
      limit: 'device-api',
      window: '60/minute',
      deviceId: 'toy-1',
      serial: 'ab01',
      ip: '192.0.2.8',
      retryAfterSeconds: 30,
    }),
    {
      listener: 'api',
      limit: 'device-api',
      window: '60/minute',
      deviceId: 'toy-1',
      serial: 'ab01',
      ip: '192.0.2.8',
      retryAfterSeconds: 30,
      refusals: 1,
    },
    "the API's first shape, without refusals: one each",
  )
  t.same(
    rateLimitExceededData({
      limit: 'login-account-ip',
      accountId: 'a1',
      ip: '192.0.2.9',
      retryAfterSeconds: 600,
      refusals: 7,
    }),
    {
      listener: 'api',
      limit: 'login-account-ip',
      accountId: 'a1',
      ip: '192.0.2.9',
      retryAfterSeconds: 600,
      refusals: 7,
    },
    "the API's folded shape, before listener",
  )
  const one = { listener: 'api', limit: 'login-ip-day', ip: '192.0.2.9', retryAfterSeconds: 3600, refusals: 3 }
  t.same(rateLimitExceededData(one), one, 'the one shape reads as itself')
  t.same(
    rateLimitExceededData(null),
    { listener: 'api', limit: '', ip: '', retryAfterSeconds: 0, refusals: 1 },
    'data that is not an object reads as one refusal, never a throw',
  )
})

t.test('every stored shape of ConnectionDenylisted reads as the one shape', async (t) => {
  t.same(
    connectionDenylistedData({ ip: '203.0.113.7', port: 40000, hits: 5 }),
    { listener: 'mqtt', ip: '203.0.113.7', port: 40000, hits: 5 },
    "the broker's shape: no listener, no cidr",
  )
  t.same(
    connectionDenylistedData({ ip: '203.0.113.7', listener: 'api', cidr: '203.0.113.0/24', count: 57 }),
    { listener: 'api', ip: '203.0.113.7', cidr: '203.0.113.0/24', hits: 1 },
    "the API's first shape: count was the address's running total, so the event weighs 1 as it always did",
  )
  const one = { listener: 'mqtt', ip: '203.0.113.7', port: 40001, cidr: '203.0.113.0/24', hits: 2 }
  t.same(connectionDenylistedData(one), one, 'the one shape reads as itself')
})
