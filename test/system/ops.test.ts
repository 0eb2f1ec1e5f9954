import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../infra/config.ts'
import { createLogger } from '../../infra/log.ts'
import { everyRole, startKennel } from '../../bin/start.ts'
import { request } from '../api/helpers.ts'

// What operators and their orchestrators read from a running kennel: /healthz and /readyz on the
// operations listener and the API, /metrics with the process's figures, and a Grafana dashboard
// that queries only metrics kennel exports.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-ops-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const env = {
  KENNEL_ENV: 'test',
  KENNEL_DATA_DIR: dir,
  KENNEL_MQTT_PORT: '0',
  KENNEL_API_PORT: '0',
  KENNEL_METRICS_PORT: '0',
  KENNEL_LOG_LEVEL: 'silent',
}
const kennel = everyRole(await startKennel(loadConfig(env), createLogger('silent')))
t.teardown(() => kennel.stop())
const ops = async (p: string, port = kennel.ports.metrics, host = '127.0.0.1') => {
  const res = await fetch(`http://${host}:${port}${p}`)
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() }
}
const api = (p: string) => request(kennel.ports.api, { method: 'GET', path: p, ca: kennel.ca.trustedPem })

t.test('/healthz and /readyz answer on the operations listener and on the API', async (t) => {
  t.same(JSON.parse((await ops('/healthz')).text), { status: 'ok' })
  t.equal((await api('/healthz')).status, 200)
  const ready = await ops('/readyz')
  t.equal(ready.status, 200)
  t.match(JSON.parse(ready.text), {
    status: 'ready',
    checks: {
      listeners: { ok: true, detail: { up: ['mqtt', 'api', 'metrics'] } },
      'event-store': { ok: true, detail: { kind: 'sqlite' } },
      projector: { ok: true, detail: { maxBehind: 10000 } },
    },
  })
  const publicReady = await api('/readyz')
  t.equal(publicReady.status, 200)
  t.same(
    publicReady.json(),
    { status: 'ready', checks: { listeners: 'ok', 'event-store': 'ok', projector: 'ok' } },
    'the API names the checks without figures',
  )
})

async function metricTypes(): Promise<Map<string, string>> {
  const { text } = await ops('/metrics')
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]))
}

t.test('/metrics has the process and Node.js figures and kennel_build_info', async (t) => {
  const { text } = await ops('/metrics')
  const types = await metricTypes()
  for (const name of [
    'process_cpu_seconds_total',
    'process_resident_memory_bytes',
    'nodejs_eventloop_lag_p99_seconds',
    'nodejs_heap_size_used_bytes',
    'nodejs_gc_duration_seconds',
  ])
    t.ok(types.has(name), name)
  const { version } = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string }
  t.match(
    text,
    new RegExp(
      `^kennel_build_info\\{version="${version.replaceAll('.', '\\.')}",node="${process.version.replaceAll('.', '\\.')}"\\} 1$`,
      'm',
    ),
  )
})

t.test('every kennel counter is named _total and nothing else is', async (t) => {
  const types = await metricTypes()
  const kennelMetrics = [...types].filter(([name]) => name.startsWith('kennel_'))
  t.ok(kennelMetrics.length > 20)
  for (const [name, type] of kennelMetrics) t.equal(name.endsWith('_total'), type === 'counter', `${name} (${type})`)
  t.equal(types.get('kennel_mqtt_event_append_failures_total'), 'counter', 'broker append failures are counted')
  for (const name of [
    'kennel_eventstore_appends_total',
    'kennel_eventstore_append_duration_seconds',
    'kennel_eventstore_head_position',
  ])
    t.ok(types.has(name), `event store: ${name}`)
})

t.test('every metric the Grafana dashboard queries exists in /metrics', async (t) => {
  const dashboard = JSON.parse(fs.readFileSync('docs/grafana/kennel.json', 'utf8')) as {
    panels: Array<{ title: string; targets?: Array<{ expr: string }> }>
  }
  const types = await metricTypes()
  const queried = new Set<string>()
  for (const panel of dashboard.panels)
    for (const target of panel.targets ?? [])
      for (const m of target.expr.matchAll(/\b(?:kennel|process|nodejs)_[a-z0-9_]+/g)) queried.add(m[0])
  t.ok(queried.size >= 20, `${queried.size} metrics queried`)
  for (const name of queried) {
    const base = name.replace(/_(bucket|sum|count)$/, '')
    t.ok(types.has(name) || types.get(base) === 'histogram', `${name} is exported`)
  }
  for (const area of ['kennel_mqtt_', 'kennel_api_', 'kennel_eventstore_', 'kennel_projection_'])
    t.ok(
      [...queried].some((n) => n.startsWith(area)),
      `the dashboard shows ${area}*`,
    )
})

t.test('KENNEL_METRICS_HOST moves the operations listener off the default loopback address', async (t) => {
  const other = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-ops-host-'))
  t.teardown(() => fs.rmSync(other, { recursive: true, force: true }))
  const moved = await startKennel(
    loadConfig({ ...env, KENNEL_DATA_DIR: other, KENNEL_METRICS_HOST: '127.0.0.2' }),
    createLogger('silent'),
  )
  t.teardown(() => moved.stop())
  t.equal((await ops('/healthz', moved.ports.metrics, '127.0.0.2')).status, 200)
  await t.rejects(ops('/healthz', moved.ports.metrics, '127.0.0.1'), 'not on 127.0.0.1 any more')
})
