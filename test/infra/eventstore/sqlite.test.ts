import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import Database from 'better-sqlite3'
import { openEventStore } from '../../../infra/eventstore/open.ts'
import { eventStoreContract } from './contract.ts'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-sqlite-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
let n = 0

t.test('contract: embedded SQLite', async (t) => {
  eventStoreContract(t, {
    async fresh() {
      const url = `sqlite:${path.join(dir, `events-${n++}.sqlite`)}`
      return { url, open: (environment = 'test') => openEventStore(url, { environment }) }
    },
  })
})

t.test('the events table refuses UPDATE and DELETE', async (t) => {
  const file = path.join(dir, 'immutable.sqlite')
  const store = await openEventStore(`sqlite:${file}`, { environment: 'test' })
  await store.append('s', [{ type: 'X', data: { v: 1 } }])
  await store.close()
  const db = new Database(file)
  t.teardown(() => db.close())
  t.throws(() => db.prepare("UPDATE events SET data = '{\"v\":2}'").run(), /immutable/)
  t.throws(() => db.prepare('DELETE FROM events').run(), /append-only/)
  t.same(db.prepare('SELECT data FROM events').pluck().all(), ['{"v":1}'], 'the event is unchanged')
})

t.test('the store file is private to its owner and opens no network listener', async (t) => {
  const file = path.join(dir, 'private.sqlite')
  const store = await openEventStore(`sqlite:${file}`, { environment: 'test' })
  t.teardown(() => store.close())
  t.equal(fs.statSync(file).mode & 0o077, 0, 'no group or other permissions')
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles()
  t.notOk(handles.some((h) => h?.constructor?.name === 'Server'), 'no server socket')
})

t.test('a subscription sees events appended by another process within 50 ms', async (t) => {
  const file = path.join(dir, 'cross.sqlite')
  const server = await openEventStore(`sqlite:${file}`, { environment: 'test' })
  t.teardown(() => server.close())
  const seen: Array<{ id: string; at: number }> = []
  let caughtUp!: () => void
  const ready = new Promise<void>((r) => (caughtUp = r))
  const sub = server.subscribe({ onEvent: (e) => void seen.push({ id: e.id, at: performance.now() }), onCaughtUp: () => caughtUp() })
  t.teardown(() => sub.stop())
  await ready
  const { execFile } = await import('node:child_process')
  const { promisify } = await import('node:util')
  const run = promisify(execFile)
  const delays: number[] = []
  for (let i = 0; i < 5; i++) {
    const { stdout: out } = await run(process.execPath, ['--import', 'tsx', '-e', `
      const { openEventStore } = await import(${JSON.stringify(path.resolve('infra/eventstore/open.ts'))})
      const s = await openEventStore(${JSON.stringify(`sqlite:${file}`)}, { environment: 'test' })
      const r = await s.append('cli', [{ type: 'FromCli', data: {} }])
      const [e] = await s.readAll({ after: r.position - 1 })
      console.log(JSON.stringify({ id: e.id, origin: performance.timeOrigin + performance.now() }))
      await s.close()
    `])
    const { id, origin } = JSON.parse(out) as { id: string; origin: number }
    const deadline = Date.now() + 1000
    while (!seen.some((s) => s.id === id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2))
    const hit = seen.find((s) => s.id === id)
    t.ok(hit, `event ${i} from the other process arrived`)
    delays.push(performance.timeOrigin + hit!.at - origin)
  }
  t.ok(delays.every((d) => d < 50), `seen within 50 ms of commit (${delays.map((d) => d.toFixed(1)).join(', ')} ms)`)
})
