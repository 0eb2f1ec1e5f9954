import t from 'tap'
import { createUnacknowledgedPublishes } from '../../broker/unacknowledged.ts'

t.test('a remembered publish is taken once, by the same device, packet identifier and payload', async (t) => {
  const u = createUnacknowledgedPublishes()
  u.remember('toy-a', 7, 'aa')
  t.notOk(u.take('toy-b', 7, 'aa'), 'another device')
  t.notOk(u.take('toy-a', 8, 'aa'), 'another packet identifier')
  t.notOk(u.take('toy-a', 7, 'bb'), 'another payload')
  t.ok(u.take('toy-a', 7, 'aa'), 'the re-send')
  t.notOk(u.take('toy-a', 7, 'aa'), 'only once')
})

t.test('entries are forgotten after their lifetime, and beyond the bound oldest first', async (t) => {
  let now = 0
  const u = createUnacknowledgedPublishes({ max: 2, ttlMs: 1000, now: () => now })
  u.remember('toy', 1, 'x')
  now = 1001
  t.notOk(u.take('toy', 1, 'x'), 'expired')
  u.remember('toy', 1, 'x')
  u.remember('toy', 2, 'x')
  u.remember('toy', 3, 'x')
  t.equal(u.size, 2, 'bounded')
  t.notOk(u.take('toy', 1, 'x'), 'the oldest went first')
  t.ok(u.take('toy', 3, 'x'))
})
