import t from 'tap'
import { kennelReadiness } from '../../../bin/readiness.ts'
import { persistentProjectionNames } from '../../../bin/read-models.ts'
import type { EventStore } from '../../../infra/eventstore/port.ts'
import { publicReport, Readiness } from '../../../infra/ops/readiness.ts'

// /readyz: ready only when the store answers, the read models are close enough to its head and
// every listener is up; a check that hangs is a failure, not a hung probe.

const storeAt = (head: number | (() => Promise<number>)): EventStore =>
  ({
    kind: 'sqlite',
    environment: 'test',
    headPosition: typeof head === 'number' ? async () => head : head,
  }) as unknown as EventStore
const checkpointsAt = (position: number) => ({
  checkpoints: async () => new Map(persistentProjectionNames().map((n) => [n, position])),
})

t.test('ready when the store answers and every read model is within the bound', async (t) => {
  const readiness = kennelReadiness({
    config: { readyMaxLagEvents: 100 },
    store: storeAt(1000),
    readModels: checkpointsAt(950),
  })
  const report = await readiness.report()
  t.equal(report.ready, true)
  t.match(report.checks, {
    'event-store': { ok: true, detail: { head: 1000 } },
    projector: { ok: true, detail: { behind: 50, maxBehind: 100 } },
    listeners: { ok: true },
  })
})

t.test(
  'not ready when the projector is further behind than KENNEL_READY_MAX_LAG_EVENTS, wherever it runs',
  async (t) => {
    const readiness = kennelReadiness({
      config: { readyMaxLagEvents: 100 },
      store: storeAt(1000),
      readModels: checkpointsAt(899),
    })
    const report = await readiness.report()
    t.equal(report.ready, false)
    t.match(report.checks.projector, { ok: false, detail: { behind: 101 } })
    t.same(
      publicReport(report),
      { status: 'not ready', checks: { listeners: 'ok', 'event-store': 'ok', projector: 'failing' } },
      'the public answer names the check, without figures',
    )
  },
)

t.test('not ready when the event store fails or does not answer in time', async (t) => {
  const failing = kennelReadiness({
    config: { readyMaxLagEvents: 100 },
    store: storeAt(() => Promise.reject(new Error('connection refused'))),
    readModels: checkpointsAt(0),
  })
  t.match(await failing.report(), {
    ready: false,
    checks: { 'event-store': { ok: false, detail: 'connection refused' } },
  })
  const hanging = new Readiness(5).add({ name: 'event-store', check: () => new Promise(() => {}) })
  t.match(await hanging.report(), {
    ready: false,
    checks: { 'event-store': { ok: false, detail: /no answer within 5 ms/ } },
  })
})

t.test('not ready until every listener is up, and again once the process drains', async (t) => {
  const readiness = new Readiness()
  const mqtt = readiness.listener('mqtt')
  const api = readiness.listener('api')
  mqtt.up()
  t.match(await readiness.report(), { ready: false, checks: { listeners: { ok: false, detail: { down: ['api'] } } } })
  api.up()
  t.match(await readiness.report(), { ready: true })
  readiness.drain()
  t.match(await readiness.report(), { ready: false, checks: { listeners: { ok: false, detail: 'stopping' } } })
})
