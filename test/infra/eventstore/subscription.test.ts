import t from 'tap'
import { KennelError } from '../../../infra/errors.ts'
import type { RecordedEvent } from '../../../infra/eventstore/port.ts'
import { ChangeNotifier, pullSubscription, type PullSource } from '../../../infra/eventstore/subscription.ts'

// The pull subscription behind the embedded and PostgreSQL stores, over a source whose reads
// fail on demand (the PostgreSQL test makes a real database fail them).

const event = (position: number): RecordedEvent =>
  ({ id: `e${position}`, stream: 's', type: 'X', revision: position - 1, position, time: new Date(0).toISOString(), data: {}, metadata: {} }) as RecordedEvent

function source(events: RecordedEvent[], fail: (call: number) => Error | undefined): PullSource & { calls: number } {
  const s = {
    calls: 0,
    notifier: new ChangeNotifier(),
    pollMs: 50,
    async readBatch(after: number, max: number) {
      const err = fail(++s.calls)
      if (err) throw err
      return events.filter((e) => e.position > after).slice(0, max)
    },
  }
  return s
}

t.test('failed reads are retried with backoff from the position after the last delivered event', async (t) => {
  const events = [1, 2, 3].map(event)
  const src = source(events, (call) => (call === 2 || call === 3 ? new Error('connection reset') : undefined))
  const got: number[] = []
  const retries: number[] = []
  let stopped: Error | undefined
  const sub = pullSubscription(src, { onEvent: (e) => void got.push(e.position), onRetry: (_e, ms) => void retries.push(ms), onError: (err) => (stopped = err) })
  t.teardown(() => sub.stop())
  while (got.length < 3) await new Promise((r) => setTimeout(r, 10))
  events.push(event(4))
  src.notifier.notify()
  while (got.length < 4) await new Promise((r) => setTimeout(r, 10))
  t.same(got, [1, 2, 3, 4], 'every event once, in order')
  t.same(retries, [100, 200], 'two failed reads, retried after 100 then 200 ms')
  t.equal(stopped, undefined)
})

t.test('stop() during a backoff ends the subscription at once, and it reads no more', async (t) => {
  const src = source([], () => new Error('database restarting'))
  const retries: number[] = []
  let stopped: Error | undefined
  const sub = pullSubscription(src, { onEvent: () => {}, onRetry: (_e, ms) => void retries.push(ms), onError: (err) => (stopped = err) })
  while (retries.length < 5) await new Promise((r) => setTimeout(r, 10))
  // now waiting 1.6 s before the next read: stop() does not wait for it
  const first = await Promise.race([sub.stop().then(() => 'stopped'), new Promise((r) => setTimeout(r, 1000, 'still waiting').unref())])
  t.equal(first, 'stopped', 'stop() ends the backoff')
  const calls = src.calls
  await new Promise((r) => setTimeout(r, 2000))
  t.equal(src.calls, calls, 'no read after stop()')
  t.equal(stopped, undefined, 'a stop is not an error')
})

t.test('a closed store and a throwing handler still end the subscription with the error', async (t) => {
  const closed = source([], () => new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed'))
  let reported: Error | undefined
  const a = pullSubscription(closed, { onEvent: () => {}, onError: (err) => (reported = err) })
  await a.closed
  t.match(reported, { code: 'KENNEL_ERR_EVENTSTORE_CLOSED' })
  t.equal(closed.calls, 1, 'not retried')

  reported = undefined
  const b = pullSubscription(source([event(1)], () => undefined), {
    onEvent: () => {
      throw new Error('handler bug')
    },
    onError: (err) => (reported = err),
  })
  await b.closed
  t.match(reported, { message: 'handler bug' })
})
