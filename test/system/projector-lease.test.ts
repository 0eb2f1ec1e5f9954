import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import pg from 'pg'
import t from 'tap'
import { persistentProjections } from '../../bin/read-models.ts'
import { loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { auditSigner, auditVerifiers } from '../../projections/catalogue.ts'
import { verifyAuditLog } from '../../projections/audit/verify.ts'
import { openPostgresReadModels } from '../../projections/readmodels/postgres.ts'
import { rebuildProjections } from '../../projections/rebuild.ts'
import { dumpReadModels } from '../projections/helpers.ts'
import { kennelEnv, until } from './kennel-child.ts'

// One active projector per cluster on PostgreSQL: two `kennel start` with KENNEL_ROLES=projector
// on one schema, events flowing; the holder of the lease is killed with -9, the other takes over,
// and what they left behind is what one projector would have: read models equal to a rebuild,
// an audit log that verifies with one head per size, every alert at the webhook (repeats only
// with the same Idempotency-Key).

const base = process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const admin = new pg.Client({ connectionString: base, connectionTimeoutMillis: 3000 })
const skip = await admin.connect().then(
  () => false,
  (err: Error) => `PostgreSQL unreachable at ${base.replace(/\/\/[^@]*@/, '//***@')}: ${err.message}`,
)
if (!skip) t.teardown(() => admin.end())

const bin = path.resolve(import.meta.dirname, '../../bin/kennel.js')

interface Node {
  readonly name: string
  readonly child: ChildProcess
  lines: string[]
  exited: Promise<unknown>
}

function startProjectorNode(t: { teardown(fn: () => unknown): void }, name: string, env: Record<string, string>): Node {
  const child = spawn(process.execPath, [bin, 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const node: Node = { name, child, lines: [], exited: new Promise((resolve) => child.once('exit', resolve)) }
  createInterface({ input: child.stdout! }).on('line', (line) => node.lines.push(line))
  createInterface({ input: child.stderr! }).on('line', (line) => node.lines.push(line))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await node.exited
  })
  return node
}

const said = (node: Node, what: RegExp): boolean => node.lines.some((l) => what.test(l))

t.test(
  'two projectors on one PostgreSQL: one works, the other takes over after kill -9 of the first, and nothing is skipped or done twice',
  { skip },
  async (t) => {
    const schema = `klease_${randomBytes(5).toString('hex')}`
    t.teardown(() => admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    const u = new URL(base)
    u.searchParams.set('schema', schema)
    const url = u.toString()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-lease-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

    const deliveries: Array<{ key: string | undefined; id: string }> = []
    const webhook = http.createServer((req, res) => {
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        deliveries.push({
          key: req.headers['idempotency-key'] as string | undefined,
          id: (JSON.parse(body) as { id: string }).id,
        })
        res.writeHead(204).end()
      })
    })
    await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r))
    t.teardown(() => webhook.close())

    const env = kennelEnv(dir, {
      KENNEL_EVENTSTORE: url,
      KENNEL_ROLES: 'projector',
      KENNEL_LOG_LEVEL: 'info',
      KENNEL_ALERT_WEBHOOK: `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/alerts`,
      KENNEL_AUDIT_HEAD_EVERY_EVENTS: '50',
    })
    const config = loadConfig(env)
    // both nodes sign with the one audit key (as a cluster shares KENNEL_AUDIT_KEY)
    auditSigner(config)
    const store = await openEventStore(url, { environment: 'test' })
    t.teardown(() => store.close())

    const first = startProjectorNode(t, 'first', env)
    await until('the first node takes the lease', () => said(first, /projector lease acquired/))
    const second = startProjectorNode(t, 'second', env)
    await until('the second node stands by', () => said(second, /projector lease held by another node: standing by/))

    // events flow: device activity, and denylisted connections that each raise an alert
    let n = 0
    let flowing = true
    const flow = (async () => {
      while (flowing) {
        const i = n++
        const ip = `198.51.${100 + Math.floor(i / 250)}.${i % 250}`
        await store.append(`security-lease`, [
          { type: 'ConnectionDenylisted', data: { ip, hits: 1 }, metadata: { actor: 'anonymous', sourceIp: ip } },
        ])
        await store.append(`mqtt-toy-${i % 7}`, [
          {
            type: 'PublishAccepted',
            data: {
              deviceId: `toy-${i % 7}`,
              topic: `toys/toy-${i % 7}/telemetry`,
              qos: 1,
              retain: false,
              bytes: 3,
              sha256: 'ab'.repeat(32),
            },
            metadata: { actor: `device:toy-${i % 7}` },
          },
        ])
        await new Promise((r) => setTimeout(r, 5))
      }
    })()
    await until('alerts reach the webhook through the first node', () => deliveries.length >= 20)
    t.notOk(said(second, /projector lease acquired/), 'the second node has not projected meanwhile')

    const killedAt = Date.now()
    await (first.child.kill('SIGKILL'), first.exited)
    await until('the second node takes over', () => said(second, /projector lease acquired/), 30_000)
    t.comment(`takeover seen ${Date.now() - killedAt} ms after kill -9 (the lease is retried every 2 s)`)
    const before = deliveries.length
    await until('alerts reach the webhook through the second node', () => deliveries.length >= before + 20)
    flowing = false
    await flow

    // the second node catches up, including the tree heads and alerts it appends itself
    const readModels = await openPostgresReadModels(url)
    t.teardown(() => readModels.close())
    const projections = persistentProjections(config, auditSigner(config))
    const names = projections.map((p) => p.name)
    let head = -1
    await until(
      'the surviving projector has applied everything',
      async () => {
        const now = await store.headPosition()
        const positions = await Promise.all(names.map(async (name) => (await readModels.load(name))?.position ?? 0))
        const settled = now === head && positions.every((p) => p === now)
        head = now
        return settled
      },
      60_000,
    )

    // the monitor appends its alerts after its commits: a settled head can come just before them
    const raised = async () => store.readAll({ filter: { types: ['SecurityAlertRaised'] } })
    await until('every alert is raised', async () => (await raised()).length >= n, 60_000).catch(() => undefined)
    const alerts = await raised()
    await until(
      'every alert is delivered',
      () => alerts.every((a) => deliveries.some((d) => d.key === a.id)),
      30_000,
    ).catch(() => undefined)
    t.equal(alerts.length, n, 'one alert per denylisted address, raised once although two monitors ran in turn')
    t.same(
      [...new Set(deliveries.map((d) => d.key))].sort(),
      alerts.map((a) => a.id).sort(),
      'every alert reached the webhook, each POST keyed by its event id',
    )
    t.ok(
      deliveries.every((d) => d.key === d.id),
      "the Idempotency-Key is the alert's id",
    )
    t.ok(
      deliveries.length - alerts.length <= 1,
      `at most the alert in flight at the kill is repeated (${deliveries.length - alerts.length} repeat(s))`,
    )

    const heads = (await store.readStream('audit-heads')).map((e) => (e.data as { size: number }).size)
    t.equal(new Set(heads).size, heads.length, 'no tree size was signed twice')
    const verified = await verifyAuditLog({ store, readModels, verifiers: auditVerifiers(config) })
    t.match(verified, { ok: true }, 'the audit log verifies')

    const rebuilt = await openPostgresReadModels(url, { schema: `${schema}_rebuilt` })
    t.teardown(async () => {
      await rebuilt.close()
      await admin.query(`DROP SCHEMA IF EXISTS ${schema}_rebuilt CASCADE`)
    })
    await rebuildProjections({ store, readModels: rebuilt, projections })
    t.same(
      await dumpReadModels(readModels, names),
      await dumpReadModels(rebuilt, names),
      'the read models equal a rebuild from the event store',
    )
    second.child.kill('SIGTERM')
    await second.exited
  },
)
