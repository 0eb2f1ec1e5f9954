import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { openEventStore } from '../../../infra/eventstore/open.ts'
import type { RecordedEvent } from '../../../infra/eventstore/port.ts'
import {
  CanonicalTextEvent,
  canonicalJson,
  canonicalJsonFast,
  storedJson,
} from '../../../infra/eventstore/canonical-json.ts'
import { canonicalEventText, canonicalStoredEventText } from '../../../projections/audit/canonical.ts'
import { eventLeaf, leafHash } from '../../../projections/audit/merkle.ts'

// The leaf of every event ever signed depends on these bytes: the native fast path must give
// exactly what the reference canonicalJson gives, for every shape an adapter can return.

t.test('the fast canonical JSON equals the reference on awkward shapes', async (t) => {
  const cases: unknown[] = [
    null,
    undefined,
    0,
    -0,
    1.5e300,
    Number.NaN,
    'a"\\\n\u2028\ud800',
    [],
    {},
    [1, undefined, null, { b: 1, a: [2, { d: 1, c: 2 }] }],
    { z: 1, a: { y: [{ q: 1, p: 2 }], x: 'é' }, m: undefined },
    { b: 1, a: 2, 10: 'x', 9: 'y' },
    JSON.parse('{"__proto__": {"b": 1, "a": 2}, "a": 1}'),
    { '': 1, ' ': 2, A: 3, a: 4, é: 5, Z: 6 },
    { date: new Date(0), n: 1 },
    { f: () => 1, s: Symbol('s'), k: 1 },
    Object.assign(Object.create(null) as object, { b: 1, a: 2 }),
    { toJSON: 'not a function', a: 1 },
    [[['deep', { y: 1, x: 2 }]]],
  ]
  cases.forEach((c, i) => t.equal(canonicalJsonFast(c), canonicalJson(c), `case ${i}`))

  let x = 7
  const rnd = (k: number): number => ((x = (x * 1103515245 + 12345) % 2147483648), x % k)
  const value = (depth: number): unknown => {
    switch (rnd(depth > 3 ? 4 : 7)) {
      case 0:
        return rnd(1000) - 500
      case 1:
        return `s${rnd(50)}`
      case 2:
        return rnd(2) === 0
      case 3:
        return null
      case 4:
        return Array.from({ length: rnd(4) }, () => value(depth + 1))
      default:
        return Object.fromEntries(
          Array.from({ length: rnd(6) }, () => [['k', 'a', 'Z', '_', '1', 'b2'][rnd(6)]! + rnd(20), value(depth + 1)]),
        )
    }
  }
  for (let i = 0; i < 2000; i++) {
    const v = value(0)
    if (canonicalJsonFast(v) !== canonicalJson(v)) t.fail(`differs for ${JSON.stringify(v)}`)
  }
})

t.test("an event's leaf hashes 0x00 and its canonical bytes (RFC 9162 §2.1.1)", async (t) => {
  const e: RecordedEvent = {
    id: 'e1',
    type: 'PublishAccepted',
    stream: 'mqtt-toy-1',
    revision: 3,
    position: 42,
    time: '2026-01-01T00:00:00.000Z',
    data: { topic: 't', deviceId: 'toy-1', nested: { b: 1, a: 'ü' } },
    metadata: { credential: 'cert:1', actor: 'device:toy-1' },
  }
  const reference = canonicalJson({
    data: e.data,
    id: e.id,
    metadata: e.metadata,
    position: e.position,
    revision: e.revision,
    stream: e.stream,
    time: e.time,
    type: e.type,
  })
  t.same(eventLeaf(e), leafHash(Buffer.from(reference, 'utf8')))
})

t.test('stored JSON is JSON.stringify with sorted keys, and canonical once parsed again', async (t) => {
  const cases: unknown[] = [
    { b: 1, a: [2, { d: 1, c: undefined }], e: new Date(0) },
    { b: 1, a: 2, 10: 'x', 9: 'y' },
    { toJSON: () => ({ z: 1, y: 2 }) },
    [undefined, () => 1, Number.NaN, -0, 1e21],
    JSON.parse('{"__proto__": {"b": 1, "a": 2}, "a": 1}'),
    'text "quoted" \u2028',
    { nested: { deeper: { k2: 1, k1: [{ z: 0, a: 0 }] } } },
  ]
  for (const [i, v] of cases.entries()) {
    const stored = storedJson(v)!
    t.same(JSON.parse(stored), JSON.parse(JSON.stringify(v)), `case ${i}: the same value as JSON.stringify`)
    t.equal(canonicalJson(JSON.parse(stored)), stored, `case ${i}: already canonical`)
  }
  t.equal(
    storedJson(() => 1),
    undefined,
    'no JSON form',
  )
})

t.test("an event's canonical text assembled from stored text equals the one from its parsed fields", async (t) => {
  const data = storedJson({ z: [1, { b: 'é\n', a: null }], deviceId: 'toy-1', n: 1.5e-7 })!
  const metadata = storedJson({ credential: 'cert:1', actor: 'device:toy-1' })!
  const e: RecordedEvent = {
    id: 'e1',
    type: 'PublishAccepted',
    stream: 'mqtt-"toy"\\1',
    revision: 3,
    position: 42,
    time: '2026-01-01T00:00:00.000Z',
    data: JSON.parse(data),
    metadata: JSON.parse(metadata),
  }
  t.equal(
    canonicalStoredEventText(e.position, e.id, e.stream, e.revision, e.type, e.time, data, metadata),
    canonicalEventText(e),
  )
})

t.test(
  'the embedded store hands the events it appended to its subscriptions with the canonical texts it stored, and they give the same canonical text',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-canonical-'))
    const store = await openEventStore(`sqlite:${path.join(dir, 'events.sqlite')}`, { environment: 'test' })
    t.teardown(async () => (await store.close(), fs.rmSync(dir, { recursive: true, force: true })))
    const fed: RecordedEvent[] = []
    let caughtUp!: () => void
    const ready = new Promise<void>((r) => (caughtUp = r))
    const sub = store.subscribe({ onEvent: (e) => void fed.push(e), onCaughtUp: () => caughtUp() })
    t.teardown(() => sub.stop())
    await ready
    await store.append('mqtt-toy-1', [
      {
        type: 'PublishAccepted',
        data: { topic: 'toys/1/echo', bytes: 64, at: new Date(0), z: [{ b: 1, a: 2 }] },
        metadata: { sourceIp: '::1', actor: 'device:toy-1' },
      },
    ])
    while (fed.length < 1) await new Promise((r) => setTimeout(r, 5))
    const [e] = fed
    t.ok(CanonicalTextEvent.textsOf(e!), 'the stored texts come with the event')
    t.equal(canonicalEventText(e!), canonicalEventText({ ...e! }), 'the same canonical text as from its parsed fields')
    t.same(e, (await store.readAll())[0], 'and the same event as a read returns')
    t.equal(
      CanonicalTextEvent.textsOf({ ...e!, data: { changed: true } }),
      undefined,
      'a changed copy does not carry them',
    )
  },
)
