import t from 'tap'
import { canPublish, canReceive, canSubscribe, inboxTopic, MAX_TOPIC_BYTES } from '../../broker/authorize.ts'

const me = 'toy-1'

t.test('a toy may publish and subscribe under its own prefix', async (t) => {
  t.ok(canPublish(me, 'toys/toy-1/status').ok)
  t.ok(canPublish(me, 'toys/toy-1/a/b/c').ok)
  t.ok(canSubscribe(me, 'toys/toy-1/#').ok)
  t.ok(canSubscribe(me, 'toys/toy-1/+/state').ok)
  t.ok(canSubscribe(me, 'toys/toy-1/inbox/+').ok)
  t.ok(canReceive(me, 'toys/toy-1/inbox/x'))
})

t.test('a toy cannot reach another toy or anything outside its prefix', async (t) => {
  const publishes = [
    'toys/toy-2/status',
    'toys/toy-10/status',
    'toys/toy-1',
    'toys/toy-1/',
    'toys/toy-1x/a',
    'other/toy-1/a',
    '/toys/toy-1/a',
    '$SYS/broker',
    '$share/g/toys/toy-1/a',
    'toys/toy-1/+',
    'toys/toy-1/#',
  ]
  for (const topic of publishes) t.notOk(canPublish(me, topic).ok, `publish ${topic}`)
  const filters = [
    '#',
    '+',
    '+/+',
    'toys/#',
    'toys/+/status',
    'toys/+/#',
    '+/toy-1/#',
    'toys/toy-2/#',
    '$SYS/#',
    '$share/g/toys/toy-1/#',
    '$share/g/#',
    'toys/toy-1',
    'toys/toy-1/',
    'toys/toy-1/a#',
    'toys/toy-1/#/a',
    'toys/toy-1/a+',
    'toys/toy-1x/#',
  ]
  for (const filter of filters) t.notOk(canSubscribe(me, filter).ok, `subscribe ${filter}`)
  t.notOk(canReceive(me, 'toys/toy-2/status'))
  t.notOk(canReceive(me, '$SYS/x/heartbeat'))
})

t.test('NUL, control characters, invalid UTF-8 and over-long topics are refused', async (t) => {
  t.notOk(canPublish(me, 'toys/toy-1/a\u0000b').ok, 'NUL')
  t.notOk(canSubscribe(me, 'toys/toy-1/\u0000/#').ok, 'NUL in a filter')
  t.notOk(canPublish(me, 'toys/toy-1/a\u0007').ok, 'control character')
  t.notOk(
    canPublish(me, Buffer.from([0x74, 0x6f, 0x79, 0x73, 0x2f, 0xff, 0xfe]).toString('utf8')).ok,
    'invalid UTF-8 decodes to U+FFFD',
  )
  t.notOk(canPublish(me, `toys/toy-1/${'a'.repeat(MAX_TOPIC_BYTES)}`).ok, 'over-long')
  t.notOk(canPublish(me, '').ok, 'empty')
  t.notOk(canPublish(me, 42).ok, 'not a string')
})

t.test('an invalid device id owns nothing', async (t) => {
  t.notOk(canPublish('a/b', 'toys/a/b/x').ok)
  t.notOk(canSubscribe('+', 'toys/+/#').ok)
  t.notOk(canPublish('', 'toys//x').ok)
})

t.test('the backend publishes only to a toy inbox', async (t) => {
  t.same(inboxTopic(me, 'recording'), { ok: true, topic: 'toys/toy-1/inbox/recording' })
  t.notOk(inboxTopic(me, '#').ok)
  t.notOk(inboxTopic(me, '').ok)
  t.notOk(inboxTopic(me, 'a//b').ok)
  t.notOk(inboxTopic('../x', 'a').ok)
})
