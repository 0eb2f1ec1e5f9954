import { generateKeyPairSync, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { accountsProjection } from '../api/accounts/projection.ts'
import { householdsProjection } from '../api/households/projection.ts'
import { recordingsProjection } from '../api/recordings/projection.ts'
import { devicesProjection } from '../devices/registry.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { NewEvent } from '../infra/eventstore/port.ts'
import { signerFromPem, verifierFromPem } from '../projections/audit/keys.ts'
import { createAuditProjection } from '../projections/audit/projection.ts'
import { verifyAuditLog } from '../projections/audit/verify.ts'
import { createMonitorProjection } from '../projections/monitor/projection.ts'
import { openSqliteReadModels } from '../projections/readmodels/sqlite.ts'
import { rebuildProjections } from '../projections/rebuild.ts'
import type { BenchOptions } from './run.ts'

// Read-model throughput on the embedded store: a rebuild from zero of every read model the
// server keeps (audit log index + Merkle tree + signed heads, security monitor, devices,
// accounts, households, recordings) over KENNEL_BENCH_EVENTS events (default 1,000,000), and
// `audit verify` over the result. Target: rebuild ≥ 100,000 events/s. CPU seconds are those of
// every thread of the process: on a busy machine compare them, and ratios within one run.

const EVENTS = Number(process.env.KENNEL_BENCH_EVENTS ?? 1_000_000)
const DEVICES = 5000
const PER_APPEND = 1000

/** the fleet's enrolment: every toy enrolled with a certificate before the traffic */
function enrolment(i: number): { stream: string; event: NewEvent } {
  const deviceId = `toy-${i >> 1}`
  const serial = (i >> 1).toString(16).padStart(8, '0')
  const at = new Date(1_790_000_000_000 + i).toISOString()
  return i % 2 === 0
    ? {
        stream: `device-${deviceId}`,
        event: {
          type: 'DeviceEnrolled',
          data: {
            deviceId,
            enrolledAt: at,
            keyGeneratedByKennel: false,
            claimCodeHash: `$argon2id$v=19$m=65536,t=3,p=4$${serial}`,
            claimCodeExpiresAt: at,
          },
          metadata: { actor: 'cli:bench' },
        },
      }
    : {
        stream: `device-${deviceId}`,
        event: {
          type: 'CertificateIssued',
          data: {
            deviceId,
            serial,
            caId: 'ca-bench',
            notBefore: at,
            notAfter: at,
            fingerprint: serial.repeat(8),
            publicKeyId: serial.repeat(8),
          },
          metadata: { actor: 'cli:bench' },
        },
      }
}

/** a fleet's traffic: mostly publishes, some connects, URL issuances and failed authentications */
function traffic(i: number): { stream: string; event: NewEvent } {
  const deviceId = `toy-${i % DEVICES}`
  const meta = { actor: `device:${deviceId}`, credential: `cert:${(i % DEVICES).toString(16).padStart(8, '0')}` }
  const stream = `mqtt-${deviceId}`
  switch (i % 20) {
    case 0:
      return {
        stream,
        event: {
          type: 'DeviceConnected',
          data: {
            deviceId,
            serial: meta.credential.slice(5),
            ip: `10.0.${(i >> 8) & 255}.${i & 255}`,
            clean: true,
            protocolVersion: 4,
          },
          metadata: meta,
        },
      }
    case 1:
      return {
        stream: `api-${deviceId}`,
        event: {
          type: 'DownloadUrlIssued',
          data: {
            recordingId: `rec-${i}`,
            householdId: `hh-${i % 2000}`,
            deviceId,
            until: new Date(1_800_000_000_000 + i).toISOString(),
          },
          metadata: meta,
        },
      }
    case 2:
      return {
        stream: `security-bench`,
        event: {
          type: 'DeviceAuthFailed',
          data: { reason: 'untrusted-certificate', ip: `198.51.100.${i % 200}` },
          metadata: { actor: 'anonymous' },
        },
      }
    default:
      return {
        stream,
        event: {
          type: 'PublishAccepted',
          data: {
            deviceId,
            topic: `toys/${deviceId}/telemetry`,
            qos: 1,
            retain: false,
            bytes: 64,
            sha256: randomBytes(32).toString('hex'),
          },
          metadata: meta,
        },
      }
  }
}

const item = (i: number): { stream: string; event: NewEvent } => (i < 2 * DEVICES ? enrolment(i) : traffic(i))

export async function run(opts: BenchOptions): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-bench-proj-'))
  try {
    const file = `sqlite:${path.join(dir, 'events.sqlite')}`
    const writer = await openEventStore(file, { environment: 'test' })
    for (let i = 0; i < EVENTS; i += PER_APPEND) {
      const byStream = new Map<string, NewEvent[]>()
      for (let k = i; k < Math.min(i + PER_APPEND, EVENTS); k++) {
        const { stream, event } = item(k)
        byStream.set(stream, [...(byStream.get(stream) ?? []), event])
      }
      await Promise.all([...byStream].map(([stream, events]) => writer.append(stream, events)))
    }
    // the rebuild reads the store as `kennel projections rebuild` finds it: closed by the
    // process that wrote it, and opened afresh
    await writer.close()
    const store = await openEventStore(file, { environment: 'test' })
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const signer = signerFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())
    const verifier = verifierFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString())
    const projections = [
      createAuditProjection({ signer, headEveryEvents: 1000, headEverySeconds: 3600 }),
      createMonitorProjection(),
      devicesProjection,
      accountsProjection,
      householdsProjection,
      recordingsProjection,
    ]
    const readModels = openSqliteReadModels(path.join(dir, 'readmodels.sqlite'))

    const cpu = process.cpuUsage()
    const rebuild = await rebuildProjections({ store, readModels, projections })
    const rebuildCpu = cpuSeconds(process.cpuUsage(cpu))
    const rebuildRate = Math.round(rebuild.head / rebuild.seconds)

    const started = performance.now()
    const verifyCpuStart = process.cpuUsage()
    const verified = await verifyAuditLog({ store, readModels, verifiers: [verifier] })
    const verifyCpu = cpuSeconds(process.cpuUsage(verifyCpuStart))
    const verifySeconds = (performance.now() - started) / 1000
    const verifyRate = Math.round(verified.events / verifySeconds)
    await readModels.close()
    await store.close()

    const figures = {
      events: rebuild.head,
      readModels: rebuild.projections,
      rebuildSeconds: Number(rebuild.seconds.toFixed(2)),
      rebuildCpuSeconds: rebuildCpu,
      rebuildEventsPerSec: rebuildRate,
      rebuildTarget: 100_000,
      rebuildMeetsTarget: rebuildRate >= 100_000,
      verifyEvents: verified.events,
      verifyOk: verified.ok,
      verifySeconds: Number(verifySeconds.toFixed(2)),
      verifyCpuSeconds: verifyCpu,
      verifyEventsPerSec: verifyRate,
      headsChecked: verified.headsChecked,
      cores: os.availableParallelism(),
    }
    if (!opts.json) {
      console.log(`projections (embedded SQLite, ${figures.cores} cores)`)
      console.log(
        `  rebuild, all read models  ${rebuildRate.toLocaleString('en')} events/s  (${rebuild.head.toLocaleString('en')} events in ${figures.rebuildSeconds} s, ${rebuildCpu} CPU s; target 100,000)`,
      )
      console.log(
        `  audit verify              ${verifyRate.toLocaleString('en')} events/s  (${verified.headsChecked} heads, ${verified.ok ? 'consistent' : 'NOT consistent'}; ${verifyCpu} CPU s)`,
      )
      console.log(`  read models               ${rebuild.projections.join(', ')}`)
    }
    return figures
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const cpuSeconds = (u: NodeJS.CpuUsage): number => Number(((u.user + u.system) / 1e6).toFixed(2))
