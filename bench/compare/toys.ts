import fs from 'node:fs'
import path from 'node:path'
import { findVerificationToken } from '../../api/accounts/tokens.ts'
import { buildApi } from '../../api/app.ts'
import { ApiMetrics } from '../../api/metrics.ts'
import { grantRole } from '../../bin/commands/account.ts'
import { type DeviceCa, loadDeviceCa } from '../../devices/ca.ts'
import { enrollDevice } from '../../devices/enroll.ts'
import { loadServerTls } from '../../devices/server-tls.ts'
import { loadMasterKey } from '../../infra/blobstore/keys.ts'
import { type Config, loadConfig } from '../../infra/config.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import type { EventStore } from '../../infra/eventstore/port.ts'
import { OutboxMailer, outboxDir, readOutbox } from '../../infra/mail/outbox.ts'

// The bench's data directory, made once and copied for every kennel run: a development CA and
// server certificate, N toys enrolled through kennel's own enrolment (ECDSA P-256 key and
// certificate per toy, DeviceEnrolled/CertificateIssued in the store, claim code hashed with
// argon2id — the slow part), and an ops account for the revocation API. Mosquitto is given the
// same CA, the same server certificate and key, and the same toys.

export interface Toy {
  id: string
  serial: string
}

export interface PreparedData {
  /** the data directory to copy for each kennel run */
  templateDir: string
  /** JSON array of { id, keyPem, certPem } for the load processes */
  toysFile: string
  toys: Toy[]
  ca: DeviceCa
  serverTls: { cert: string; key: string }
  ops: { email: string; password: string }
}

const OPS = { email: 'ops@bench.example.org', password: 'violet-Harbour-43-quiet-Lantern' }
const ENROLMENT_CONCURRENCY = 4

/** the environment every kennel of the bench runs with, on top of the caller's (KENNEL_* removed) */
export function kennelEnv(dataDir: string): Record<string, string> {
  return { KENNEL_ENV: 'development', KENNEL_DATA_DIR: dataDir }
}

/** what a kept data set records about itself (KENNEL_BENCH_DATA) */
interface KeptData {
  count: number
  toys: Toy[]
}

const KEPT = 'bench-data.json'

/** The prepared data kept in `dir` by an earlier run with the same number of toys, or made there
 * and kept (KENNEL_BENCH_DATA): enrolment is most of a short run's time, and every kennel run
 * copies the template, so a kept set is reused unchanged. */
export async function keptData(dir: string, count: number, progress: (s: string) => void): Promise<PreparedData> {
  const manifest = path.join(dir, KEPT)
  if (fs.existsSync(manifest)) {
    const kept = JSON.parse(fs.readFileSync(manifest, 'utf8')) as KeptData
    if (kept.count === count) {
      progress(`reusing the ${count} toys kept in ${dir} (KENNEL_BENCH_DATA)`)
      const templateDir = path.join(dir, 'kennel-template')
      const config = loadConfig({ ...kennelEnv(templateDir), KENNEL_LOG_LEVEL: 'silent' })
      const ca = await loadDeviceCa(config)
      return {
        templateDir,
        toysFile: path.join(dir, 'toys.json'),
        toys: kept.toys,
        ca,
        serverTls: await loadServerTls(config, ca),
        ops: OPS,
      }
    }
  }
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  progress(`enrolling ${count} toys in ${dir}, kept for the next runs (KENNEL_BENCH_DATA)…`)
  const data = await prepareData(dir, count, progress)
  fs.writeFileSync(manifest, JSON.stringify({ count, toys: data.toys } satisfies KeptData))
  return data
}

export async function prepareData(runDir: string, count: number, progress: (s: string) => void): Promise<PreparedData> {
  const templateDir = path.join(runDir, 'kennel-template')
  const config = loadConfig({ ...kennelEnv(templateDir), KENNEL_LOG_LEVEL: 'silent' })
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  try {
    const ca = await loadDeviceCa(config)
    const serverTls = await loadServerTls(config, ca)
    const toys: Array<Toy & { keyPem: string; certPem: string }> = []
    const t0 = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: ENROLMENT_CONCURRENCY }, async () => {
        while (next < count) {
          const id = `bench-toy-${String(next++).padStart(5, '0')}`
          const d = await enrollDevice({ store, ca, config, actor: 'cli:bench' }, id)
          toys.push({ id, serial: d.serial, keyPem: d.keyPem, certPem: d.certPem })
          if (toys.length % 250 === 0)
            progress(`  enrolled ${toys.length}/${count} toys (${Math.round((performance.now() - t0) / 1000)} s)`)
        }
      }),
    )
    toys.sort((a, b) => a.id.localeCompare(b.id))
    const toysFile = path.join(runDir, 'toys.json')
    fs.writeFileSync(toysFile, JSON.stringify(toys.map(({ id, keyPem, certPem }) => ({ id, keyPem, certPem }))), {
      mode: 0o600,
    })
    await createOpsAccount(config, store, ca)
    return { templateDir, toysFile, toys: toys.map(({ id, serial }) => ({ id, serial })), ca, serverTls, ops: OPS }
  } finally {
    await store.close()
  }
}

// the account signs up through the API (in process, no listener) and is granted ops as
// `kennel account grant` does; each kennel run logs in over HTTPS
async function createOpsAccount(config: Config, store: EventStore, ca: DeviceCa): Promise<void> {
  const mailer = new OutboxMailer(outboxDir(config.dataDir), config.mailFrom)
  const app = await buildApi({
    config,
    store,
    masterKey: loadMasterKey(config),
    ca,
    notifyDevice: () => undefined,
    mailer,
    metrics: new ApiMetrics(),
  })
  try {
    const res = await app.inject({ method: 'POST', url: '/v1/accounts', payload: OPS })
    if (res.statusCode >= 300) throw new Error(`creating the bench's ops account failed: ${res.statusCode} ${res.body}`)
    // the sign-up is confirmed with the token of the mail it sent (the development outbox)
    const token = findVerificationToken(readOutbox(outboxDir(config.dataDir)).at(-1)?.text ?? '')
    const verified = await app.inject({ method: 'POST', url: '/v1/accounts/verify', payload: { token } })
    if (verified.statusCode !== 200)
      throw new Error(`confirming the bench's ops account failed: ${verified.statusCode} ${verified.body}`)
  } finally {
    await app.close()
    await mailer.close()
  }
  await grantRole({ config, store, actor: 'cli:bench' }, OPS.email, 'ops')
}
