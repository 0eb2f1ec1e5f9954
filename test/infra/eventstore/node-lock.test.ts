import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { startKennel } from '../../../bin/start.ts'
import { errorCatalogue } from '../../../infra/errors.ts'
import { lockEmbeddedStore } from '../../../infra/eventstore/node-lock.ts'
import { loadConfig } from '../../../infra/config.ts'
import { createLogger } from '../../../infra/log.ts'
import { kennelEnv } from '../../system/kennel-child.ts'

// One node per embedded store: a second `kennel start` on the same data directory is refused
// before it opens anything, and the lock of a node that died is taken over.

function tempStore(t: { teardown(fn: () => void): void }): { dir: string; store: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-lock-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return { dir, store: path.join(dir, 'events.sqlite') }
}

const writeLock = (store: string, holder: Record<string, unknown>): void =>
  fs.writeFileSync(
    `${store}.lock`,
    JSON.stringify({ hostname: os.hostname(), since: '2026-01-01T00:00:00.000Z', ...holder }),
  )

t.test(
  'a second lock on a store is refused, naming the host and pid that hold it, until the first is released',
  async (t) => {
    const { store } = tempStore(t)
    const first = lockEmbeddedStore(store)
    t.throws(() => lockEmbeddedStore(store), {
      code: 'KENNEL_ERR_STORE_IN_USE',
      message: new RegExp(
        `in use by the kennel node on ${os.hostname()} \\(pid ${process.pid}\\).*remove ${store}\\.lock`,
      ),
    })
    first.release()
    t.notOk(fs.existsSync(`${store}.lock`), 'released: the file is gone')
    lockEmbeddedStore(store).release()
  },
)

t.test('the lock of a process that is gone on this host is taken over', async (t) => {
  const { store } = tempStore(t)
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  writeLock(store, { pid: Number(gone.stdout) })
  const lock = lockEmbeddedStore(store)
  t.match(
    JSON.parse(fs.readFileSync(`${store}.lock`, 'utf8')),
    { pid: process.pid, hostname: os.hostname() },
    'the file now names this process',
  )
  lock.release()
})

t.test('a lock naming this pid that this process never took (a restarted container) is taken over', async (t) => {
  const { store } = tempStore(t)
  writeLock(store, { pid: process.pid })
  const lock = lockEmbeddedStore(store)
  t.not(
    JSON.parse(fs.readFileSync(`${store}.lock`, 'utf8')).since,
    '2026-01-01T00:00:00.000Z',
    "the file is this process's own now",
  )
  lock.release()
})

t.test('a lock written on another host, or by a live process, is refused', async (t) => {
  const { store } = tempStore(t)
  writeLock(store, { hostname: 'other-host.example', pid: 1 })
  t.throws(() => lockEmbeddedStore(store), {
    code: 'KENNEL_ERR_STORE_IN_USE',
    message: /other-host\.example \(pid 1\)/,
  })
  writeLock(store, { pid: process.ppid })
  t.throws(() => lockEmbeddedStore(store), { code: 'KENNEL_ERR_STORE_IN_USE' }, 'the parent process is alive')
})

t.test(
  'a second `kennel start` on the data directory of a running node exits with KENNEL_ERR_STORE_IN_USE',
  async (t) => {
    const { dir } = tempStore(t)
    const config = loadConfig({
      KENNEL_ENV: 'test',
      KENNEL_DATA_DIR: dir,
      KENNEL_MQTT_PORT: '0',
      KENNEL_API_PORT: '0',
      KENNEL_METRICS_PORT: '0',
      KENNEL_ROLES: 'broker',
    })
    const kennel = await startKennel(config, createLogger('silent'))
    t.teardown(() => kennel.stop())
    const second = spawn(process.execPath, [path.resolve(import.meta.dirname, '../../../bin/kennel.js'), 'start'], {
      env: kennelEnv(dir),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    second.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
    const code = await new Promise<number | null>((resolve) => second.once('exit', resolve))
    t.equal(code, errorCatalogue.KENNEL_ERR_STORE_IN_USE.exit, 'refused with its exit code')
    t.match(stderr, /KENNEL_ERR_STORE_IN_USE/)
    t.match(stderr, new RegExp(`pid ${process.pid}`), 'naming the node that holds it')
    await kennel.stop()
    t.notOk(fs.existsSync(path.join(dir, 'events.sqlite.lock')), 'a node that stops releases it')
  },
)
