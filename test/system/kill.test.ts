import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { enrollToys, kennelEnv, PublishingToy, startKennelChild, until } from './kennel-child.ts'

// R19, durability of what was acknowledged: `kennel start` on the embedded store, killed with
// SIGKILL several times while toys publish QoS 1 messages, and restarted in between. Every
// message that got its PUBACK has its PublishAccepted event after the last restart: the PUBACK
// is sent only after the event's commit.

const LIVES = 3
const ACKS_PER_LIFE = 100

t.test(
  'kill -9 under QoS 1 load: every acknowledged publish has its PublishAccepted event, and the data files stay private',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-kill-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    // a data dir the user made, readable by anyone, and the usual umask: kennel's files stay private
    fs.chmodSync(dir, 0o755)
    const umask = process.umask(0o022)
    t.teardown(() => process.umask(umask))
    const env = kennelEnv(dir)
    const config = loadConfig(env)
    const toys = await enrollToys(config, ['toy-k1', 'toy-k2', 'toy-k3'])

    const acked = new Set<string>()
    for (let life = 0; life < LIVES; life++) {
      const kennel = await startKennelChild(t, env)
      const load = toys.map((toy) => new PublishingToy(toy, kennel.mqttPort, { window: 16 }))
      const ackedNow = (): number => load.reduce((n, l) => n + l.acked.size, 0)
      await until(`${ACKS_PER_LIFE} acknowledged publishes in life ${life}`, () => ackedNow() >= ACKS_PER_LIFE)
      // killed with publishes in flight: the toys keep their window full
      await kennel.kill9()
      await Promise.all(load.map((l) => l.stop()))
      for (const l of load) for (const sha of l.acked) acked.add(sha)
    }

    // before this process opens the store (which would make the files private itself)
    const files = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) =>
      fs.statSync(path.join(dir, f)).isFile(),
    )
    t.ok(
      files.includes('events.sqlite-wal') && files.includes('readmodels.sqlite-wal'),
      'the write-ahead logs survived the kill',
    )
    // certificates, the CA's description and the audit public key hold nothing secret
    const isPublic = (f: string): boolean => /(^|\/)(ca\.crt|ca\.json|signing-key\.pub\.pem)$/.test(f)
    const open = files.filter((f) => !isPublic(f) && (fs.statSync(path.join(dir, f)).mode & 0o077) !== 0)
    t.same(open, [], `every file kennel wrote in the data dir is 0600 (${files.length} files)`)

    const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
    t.teardown(() => store.close())
    const recorded = new Map<string, number>()
    for (const e of await store.readAll({ filter: { types: ['PublishAccepted'] } })) {
      const sha = (e.data as { sha256: string }).sha256
      recorded.set(sha, (recorded.get(sha) ?? 0) + 1)
    }
    const missing = [...acked].filter((sha) => !recorded.has(sha))
    t.ok(acked.size >= LIVES * ACKS_PER_LIFE, `${acked.size} publishes were acknowledged over ${LIVES} kills`)
    t.equal(
      missing.length,
      0,
      `every acknowledged publish has its PublishAccepted (${missing.length} of ${acked.size} missing)`,
    )
    t.ok(
      [...acked].every((sha) => recorded.get(sha) === 1),
      'exactly one each',
    )
  },
)
