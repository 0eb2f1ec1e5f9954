import t from 'tap'
import type { EventStore, SubscribeOptions } from '../../infra/eventstore/port.ts'
import { followProjections } from '../../projections/follow.ts'
import type { Projection } from '../../projections/projection.ts'
import { sandbox } from './helpers.ts'

// The in-memory follower (the broker's devices, the API's read models) reads only its
// projections' event types, and still answers "have you seen position n?" for any n.

const counting: Projection = {
  name: 'counting',
  version: 1,
  eventTypes: ['Counted'],
  apply(tx, event) {
    const n = tx.get<number>('counts', event.stream) ?? 0
    tx.put('counts', event.stream, n + 1)
  },
}

/** the store, recording the options of each subscription */
function spied(store: EventStore): { store: EventStore; subscriptions: SubscribeOptions[] } {
  const subscriptions: SubscribeOptions[] = []
  const proxy = new Proxy(store, {
    get(target, key) {
      if (key === 'subscribe')
        return (options: SubscribeOptions) => (subscriptions.push(options), target.subscribe(options))
      const value = Reflect.get(target, key) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  return { store: proxy, subscriptions }
}

t.test(
  "a follower reads only its projections' event types, and waitFor resolves for the position of an event it left out",
  async (t) => {
    const box = await sandbox(t)
    await box.store.append('c-1', [
      { type: 'Counted', data: {} },
      { type: 'Published', data: {} },
    ])
    const { store, subscriptions } = spied(box.store)
    const followed = followProjections(store, [counting])
    t.teardown(() => followed.stop())
    await followed.caughtUp
    t.same(
      subscriptions.map((s) => s.filter),
      [{ types: ['Counted'] }],
      "the subscription is filtered to the projections' types",
    )
    await box.store.append('c-1', [{ type: 'Counted', data: {} }])
    const last = await box.store.append('noise', [{ type: 'Published', data: {} }])
    await followed.waitFor(last.position)
    t.ok(followed.position >= last.position, 'the position moved past the event it left out')
    t.equal(followed.docs.get('counts', 'c-1'), 2)
  },
)
