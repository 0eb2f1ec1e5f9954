import t from 'tap'
import { createRecorder } from '../../broker/recorder.ts'
import { KennelError } from '../../infra/errors.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'
import { createLogger } from '../../infra/log.ts'

// A broker event whose append fails for good is counted (kennel_mqtt_event_append_failures_total),
// so an operator sees lost evidence as a rate, not a number that a restart resets unnoticed.

t.test('events of an append that fails are reported to onFailure, once per event', async (t) => {
  const refusing = {
    append: async () => {
      throw new KennelError('KENNEL_ERR_INTERNAL', 'disk full')
    },
  } as unknown as EventStore
  const lost: number[] = []
  const recorder = createRecorder(refusing, createLogger('silent'), { onFailure: (events) => lost.push(events) })
  const meta = { actor: 'device:toy-1' }
  const publish = {
    type: 'PublishAccepted',
    data: { deviceId: 'toy-1', topic: 'toys/toy-1/telemetry', qos: 0, bytes: 1 },
  }
  const settled = Promise.allSettled([
    recorder.record('mqtt-toy-1', publish as never, meta),
    recorder.record('mqtt-toy-1', publish as never, meta),
  ])
  await recorder.flush()
  t.same(
    (await settled).map((s) => s.status),
    ['rejected', 'rejected'],
    'the waiting callers are refused',
  )
  t.same(lost, [2], 'both events of the failed append are counted')
})
