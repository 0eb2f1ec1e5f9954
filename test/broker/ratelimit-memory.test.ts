import t from 'tap'
import { createRateLimits, MemoryWindow } from '../../broker/ratelimit.ts'

// The in-process counts (no Redis): rate-limiter-flexible's RateLimiterMemory semantics, answered
// synchronously. Times are given explicitly; nothing here waits.

t.test("a window allows its points from the key's first request and refuses the next until it ends", async (t) => {
  const w = new MemoryWindow('3/second', 3, 1000)
  t.same([w.consume('toy', 1, 10_000), w.consume('toy', 1, 10_100), w.consume('toy', 1, 10_200)], [0, 0, 0])
  t.equal(
    w.consume('toy', 1, 10_400),
    600,
    'refused: the wait is until the window that began at the first request ends',
  )
  t.equal(w.consume('other', 1, 10_400), 0, 'another key has its own window')
  t.equal(w.consume('toy', 1, 11_000), 0, 'a new window begins once the old one ended')
})

t.test('refused requests count too, as rate-limiter-flexible counts them', async (t) => {
  const w = new MemoryWindow('2/minute', 2, 60_000)
  w.consume('toy', 1, 0)
  w.consume('toy', 1, 0)
  t.ok(w.consume('toy', 1, 1) > 0)
  t.ok(w.consume('toy', 1, 59_999) > 0, 'still refused at the end of the window')
  t.equal(w.consume('toy', 1, 60_000), 0)
})

t.test('a request larger than the whole window is refused at once', async (t) => {
  const w = new MemoryWindow('1000/minute', 1000, 60_000)
  t.equal(w.consume('toy', 1001, 5), 60_000)
})

t.test('expired keys are dropped, so a fleet that stopped talking is not held in memory', async (t) => {
  const w = new MemoryWindow('10/second', 10, 1000)
  for (let i = 0; i < 100; i++) w.consume(`toy-${i}`, 1, 0)
  t.equal(w.size, 100)
  w.consume('late', 1, 2000)
  t.equal(w.size, 1, 'only the key counted in the current window is left')
})

t.test('every window of a limit counts; the refusal names the one with the longest wait', async (t) => {
  const limits = createRateLimits({
    mqttConnectLimits: [],
    mqttConnectIpLimits: [],
    mqttPublishLimits: [
      { points: 2, durationSeconds: 1, label: 'second' },
      { points: 3, durationSeconds: 3600, label: 'hour' },
    ],
    mqttByteLimits: [{ points: 100, durationSeconds: 60, label: 'minute' }],
    mqttSubscribeLimits: [],
  })
  const publish = (bytes: number) => limits.publish('toy', bytes)
  t.same([publish(10), publish(10)], [{ ok: true }, { ok: true }])
  t.match(
    publish(10),
    { ok: false, limit: 'publish-device', window: '2/second' },
    "the third is over the second's limit only",
  )
  t.match(
    publish(10),
    { ok: false, limit: 'publish-device', window: '3/hour' },
    'the fourth is over both: the hour waits longest',
  )
  t.same(limits.publish('quiet', 0), { ok: true }, 'a zero-byte publish counts as a publish only')
  t.match(limits.publish('bulky', 101), { ok: false, limit: 'bytes-device', window: '100/minute' })
})
