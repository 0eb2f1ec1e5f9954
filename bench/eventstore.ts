import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import pg from 'pg'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { EventStore, NewEvent } from '../infra/eventstore/port.ts'
import type { BenchOptions } from './run.ts'

// Event-store throughput: durable single-event appends from 64 concurrent appenders, 10-event
// appends from the same 64, and replay through a catch-up subscription. Each adapter starts
// from an empty store (a temp dir, a fresh PostgreSQL schema dropped afterwards).

const APPENDERS = 64
const SECONDS = 3
const REPLAY = { sqlite: 1_000_000, postgres: 300_000 }
const PG_URL = process.env.KENNEL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

interface Figures {
  appendsPerSec: number
  batchEventsPerSec: number
  replayEventsPerSec: number
  replayEvents: number
  /** p99 event-loop delay while the single-event appends ran: how long a commit stalls everything else */
  appendLoopDelayP99Ms: number
}

const event = (i: number): NewEvent => ({
  type: 'PublishAccepted',
  data: { topic: `toys/toy-${i % 1000}/telemetry`, qos: 1, size: 64, sha256: randomBytes(32).toString('hex') },
  metadata: { actor: `device:toy-${i % 1000}` },
})

/** append from APPENDERS concurrent loops for SECONDS; returns events per second */
async function appendRate(
  store: EventStore,
  eventsPerAppend: number,
  loop?: ReturnType<typeof monitorEventLoopDelay>,
): Promise<number> {
  loop?.enable()
  const end = performance.now() + SECONDS * 1000
  const start = performance.now()
  let events = 0
  await Promise.all(
    Array.from({ length: APPENDERS }, async (_, w) => {
      for (let i = 0; performance.now() < end; i++) {
        await store.append(
          `bench-${w}`,
          Array.from({ length: eventsPerAppend }, (_, k) => event(i * eventsPerAppend + k)),
        )
        events += eventsPerAppend
      }
    }),
  )
  loop?.disable()
  return events / ((performance.now() - start) / 1000)
}

/** fill the store up to `total` events in large appends, then time one subscription over all of them */
async function replayRate(store: EventStore, total: number): Promise<number> {
  const missing = total - (await store.headPosition())
  const chunks = Math.ceil(Math.max(0, missing) / 1000)
  for (let c = 0; c < chunks; c += 16) {
    await Promise.all(
      Array.from({ length: Math.min(16, chunks - c) }, (_, k) =>
        store.append(
          `seed-${(c + k) % 100}`,
          Array.from({ length: 1000 }, (_, i) => event(i)),
        ),
      ),
    )
  }
  const head = await store.headPosition()
  const start = performance.now()
  let count = 0
  await new Promise<void>((resolve, reject) => {
    const sub = store.subscribe({
      onEvent: (e) => {
        count++
        if (e.position >= head) void sub.stop().then(resolve)
      },
      onError: reject,
    })
  })
  return count / ((performance.now() - start) / 1000)
}

async function measure(store: EventStore, replayEvents: number): Promise<Figures> {
  const loop = monitorEventLoopDelay({ resolution: 1 })
  const appendsPerSec = await appendRate(store, 1, loop)
  const batchEventsPerSec = await appendRate(store, 10)
  const replayEventsPerSec = await replayRate(store, replayEvents)
  return {
    appendsPerSec: Math.round(appendsPerSec),
    batchEventsPerSec: Math.round(batchEventsPerSec),
    replayEventsPerSec: Math.round(replayEventsPerSec),
    replayEvents,
    appendLoopDelayP99Ms: Math.round(loop.percentile(99) / 1e4) / 100,
  }
}

async function sqlite(): Promise<Figures> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-bench-'))
  const store = await openEventStore(`sqlite:${path.join(dir, 'events.sqlite')}`, { environment: 'test' })
  try {
    return await measure(store, REPLAY.sqlite)
  } finally {
    await store.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

async function postgres(): Promise<Figures | { skipped: string }> {
  const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 })
  try {
    await admin.connect()
  } catch (err) {
    return { skipped: `PostgreSQL unreachable at ${PG_URL.replace(/\/\/[^@]*@/, '//***@')}: ${(err as Error).message}` }
  }
  const schema = `kennel_bench_${randomBytes(6).toString('hex')}`
  const url = new URL(PG_URL)
  url.searchParams.set('schema', schema)
  try {
    const store = await openEventStore(url.toString(), { environment: 'test' })
    try {
      return await measure(store, REPLAY.postgres)
    } finally {
      await store.close()
    }
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await admin.end()
  }
}

export async function run(_opts: BenchOptions): Promise<Record<string, unknown>> {
  const result: Record<string, Figures | { skipped: string }> = { sqlite: await sqlite(), postgres: await postgres() }
  console.log(`event store, ${APPENDERS} concurrent appenders, ${SECONDS} s per append figure`)
  console.log(
    'adapter    appends/s   10-event batches: events/s   replay: events/s (events replayed)   event-loop delay p99 during appends',
  )
  for (const [name, f] of Object.entries(result)) {
    if ('skipped' in f) console.log(`${name.padEnd(10)} skipped: ${f.skipped}`)
    else
      console.log(
        `${name.padEnd(10)} ${String(f.appendsPerSec).padStart(9)}   ${String(f.batchEventsPerSec).padStart(27)}   ${String(f.replayEventsPerSec).padStart(16)} (${f.replayEvents})   ${f.appendLoopDelayP99Ms} ms`,
      )
  }
  return result
}
