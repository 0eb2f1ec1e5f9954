import { generateKeyPairSync, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { NewEvent } from '../infra/eventstore/port.ts'
import { signerFromPem, verifierFromPem } from '../projections/audit/keys.ts'
import { createAuditProjection } from '../projections/audit/projection.ts'
import { verifyAuditLog } from '../projections/audit/verify.ts'
import { createMonitorProjection } from '../projections/monitor/projection.ts'
import { openSqliteReadModels } from '../projections/readmodels/sqlite.ts'
import { rebuildProjections } from '../projections/rebuild.ts'
import type { BenchOptions } from './run.ts'

// Read-model throughput on the embedded store: a rebuild from zero of every read model of this
// context together (audit log index + Merkle tree + signed heads, security monitor) over
// KENNEL_BENCH_EVENTS events (default 1,000,000), and `audit verify` over the result.
// Target: rebuild ≥ 100,000 events/s.

const EVENTS = Number(process.env.KENNEL_BENCH_EVENTS ?? 1_000_000)
const PER_APPEND = 1000

/** a fleet's traffic: mostly publishes, some connects, URL issuances and failed authentications */
function event(i: number): NewEvent {
  const deviceId = `toy-${i % 5000}`
  const meta = { actor: `device:${deviceId}`, credential: `cert:${(i % 5000).toString(16).padStart(8, '0')}` }
  switch (i % 20) {
    case 0:
      return { type: 'DeviceConnected', data: { deviceId, serial: meta.credential.slice(5), ip: `10.0.${(i >> 8) & 255}.${i & 255}`, clean: true, protocolVersion: 4 }, metadata: meta }
    case 1:
      return { type: 'DownloadUrlIssued', data: { recordingId: `rec-${i}`, householdId: `hh-${i % 2000}`, deviceId, until: new Date(1_800_000_000_000 + i).toISOString() }, metadata: meta }
    case 2:
      return { type: 'DeviceAuthFailed', data: { reason: 'untrusted-certificate', ip: `198.51.100.${i % 200}` }, metadata: { actor: 'anonymous' } }
    default:
      return { type: 'PublishAccepted', data: { deviceId, topic: `toys/${deviceId}/telemetry`, qos: 1, retain: false, bytes: 64, sha256: randomBytes(32).toString('hex') }, metadata: meta }
  }
}

export async function run(opts: BenchOptions): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-bench-proj-'))
  try {
    const store = await openEventStore(`sqlite:${path.join(dir, 'events.sqlite')}`, { environment: 'test' })
    for (let i = 0; i < EVENTS; i += PER_APPEND) {
      const n = Math.min(PER_APPEND, EVENTS - i)
      await store.append(`mqtt-bench-${(i / PER_APPEND) % 64}`, Array.from({ length: n }, (_, k) => event(i + k)))
    }
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const signer = signerFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())
    const verifier = verifierFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString())
    const projections = [createAuditProjection({ signer, headEveryEvents: 1000, headEverySeconds: 3600 }), createMonitorProjection()]
    const readModels = openSqliteReadModels(path.join(dir, 'readmodels.sqlite'))

    const rebuild = await rebuildProjections({ store, readModels, projections })
    const rebuildRate = Math.round(rebuild.head / rebuild.seconds)

    const started = performance.now()
    const verified = await verifyAuditLog({ store, readModels, verifiers: [verifier] })
    const verifySeconds = (performance.now() - started) / 1000
    const verifyRate = Math.round(verified.events / verifySeconds)
    await readModels.close()
    await store.close()

    const figures = {
      events: rebuild.head,
      rebuildSeconds: Number(rebuild.seconds.toFixed(2)),
      rebuildEventsPerSec: rebuildRate,
      rebuildTarget: 100_000,
      rebuildMeetsTarget: rebuildRate >= 100_000,
      verifyEvents: verified.events,
      verifyOk: verified.ok,
      verifySeconds: Number(verifySeconds.toFixed(2)),
      verifyEventsPerSec: verifyRate,
      headsChecked: verified.headsChecked,
    }
    if (!opts.json) {
      console.log('projections (embedded SQLite)')
      console.log(`  rebuild, all read models  ${rebuildRate.toLocaleString('en')} events/s  (${rebuild.head.toLocaleString('en')} events in ${figures.rebuildSeconds} s; target 100,000)`)
      console.log(`  audit verify              ${verifyRate.toLocaleString('en')} events/s  (${verified.headsChecked} heads, ${verified.ok ? 'consistent' : 'NOT consistent'})`)
    }
    return figures
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
