import type { Command } from 'commander'
import { findVerificationToken } from '../../api/accounts/tokens.ts'
import { loadDeviceCa } from '../../devices/ca.ts'
import {
  type FleetOptions,
  type FleetReport,
  mintFleet,
  pairFleet,
  runFleet,
  writeFleet,
} from '../../devices/simulator/fleet.ts'
import { KennelError } from '../../infra/errors.ts'
import { outboxDir, readOutbox } from '../../infra/mail/outbox.ts'
import { action, withStore } from '../context.ts'

// `kennel simulate`: a fleet of toys for load and soak tests (devices/simulator/fleet.ts).

interface SimulateOptions {
  toys: string
  rate: string
  duration: string
  broker?: string[]
  api?: string
  qos: string
  paired: string
  recordingsPerMinute: string
  recordingBytes: string
  connectConcurrency: string
  window: string
  json?: boolean
}

function count(name: string, value: string, { min = 0, max = 10_000_000 } = {}): number {
  const n = Number(value)
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(n) || n < min || n > max) {
    throw new KennelError(
      'KENNEL_ERR_VALIDATION',
      `${name} must be a number from ${min} to ${max}, not ${JSON.stringify(value)}`,
    )
  }
  return n
}

function url(name: string, value: string, protocols: string[]): string {
  let u: URL
  try {
    u = new URL(value)
  } catch {
    throw new KennelError('KENNEL_ERR_VALIDATION', `${name} must be a URL, not ${JSON.stringify(value)}`)
  }
  if (!protocols.includes(u.protocol))
    throw new KennelError(
      'KENNEL_ERR_VALIDATION',
      `${name} must be a ${protocols.join(' or ')}// URL, not ${JSON.stringify(value)}`,
    )
  return value.replace(/\/$/, '')
}

export function registerSimulateCommand(program: Command): void {
  program
    .command('simulate')
    .description(
      'run a fleet of simulated toys against running brokers (load and soak): telemetry at a total rate, recordings from paired toys; development and test stores only',
    )
    .option('--toys <n>', 'toys in the fleet (minted once with the development CA, then reused)', '100')
    .option('--rate <msgs>', 'telemetry messages per second over the whole fleet', '100')
    .option('--duration <seconds>', 'how long to publish', '30')
    .option(
      '--broker <url...>',
      "broker URLs (mqtts://host:port) to spread the toys over; default: this configuration's MQTT port on localhost",
    )
    .option(
      '--api <url>',
      "the HTTPS API for pairing and recordings; default: this configuration's API port on localhost",
    )
    .option('--qos <0|1>', 'telemetry QoS', '1')
    .option(
      '--paired <n>',
      "toys paired with the simulator's household, uploading recordings (needs the development outbox to confirm its parent account)",
      '5',
    )
    .option('--recordings-per-minute <n>', 'recordings per minute over the paired toys', '6')
    .option('--recording-bytes <n>', 'size of each recording', '32768')
    .option('--connect-concurrency <n>', 'handshakes in flight while the fleet connects', '32')
    .option('--window <n>', 'publishes in flight per toy before it skips a beat', '10')
    .option('--json', 'print the report as one JSON object')
    .action(
      action(async (opts: SimulateOptions) => {
        const toys = count('--toys', opts.toys, { min: 1, max: 1_000_000 })
        const qos = count('--qos', opts.qos, { max: 1 }) as 0 | 1
        const paired = Math.min(toys, count('--paired', opts.paired, { max: 1_000_000 }))
        const report = await withStore(async ({ config, store, actor }) => {
          const o: FleetOptions = {
            toys,
            rate: count('--rate', opts.rate, { max: 1_000_000 }),
            durationS: count('--duration', opts.duration, { max: 7 * 86_400 }),
            brokers: (opts.broker ?? [`mqtts://localhost:${config.mqttPort}`]).map((b) =>
              url('--broker', b, ['mqtts:']),
            ),
            qos,
            paired,
            recordingsPerMinute: count('--recordings-per-minute', opts.recordingsPerMinute, { max: 100_000 }),
            recordingBytes: count('--recording-bytes', opts.recordingBytes, { min: 1, max: 50 * 1024 * 1024 }),
            connectConcurrency: count('--connect-concurrency', opts.connectConcurrency, { min: 1, max: 10_000 }),
            window: count('--window', opts.window, { min: 1, max: 65_535 }),
          }
          if (paired > 0) o.api = url('--api', opts.api ?? `https://localhost:${config.apiPort}`, ['https:'])
          const ca = await loadDeviceCa(config)
          const say = (s: string): void => void process.stderr.write(`kennel simulate: ${s}\n`)
          const { fleet, file, minted } = await mintFleet({ config, store, ca, actor }, toys, say)
          say(`${toys} toys (${minted} minted now, credentials in ${file})`)
          if (o.api) {
            // the parent's confirmation mail, from the development outbox
            const confirm = async (email: string): Promise<string | undefined> => {
              for (let i = 0; i < 50; i++) {
                const mail = readOutbox(outboxDir(config.dataDir))
                  .filter((m) => m.headers.to === email)
                  .at(-1)
                if (mail) return findVerificationToken(mail.text)
                await new Promise((r) => setTimeout(r, 100))
              }
              return undefined
            }
            await pairFleet(fleet, paired, o.api, ca.trustedPem, confirm)
            writeFleet(file, fleet)
          }
          return runFleet(fleet, ca.trustedPem, o, say)
        })
        process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : text(report))
        if (report.connected === 0)
          throw new KennelError(
            'KENNEL_ERR_UNAVAILABLE',
            'no toy could connect: is `kennel start` running at the broker URLs given?',
          )
      }),
    )
}

function text(r: FleetReport): string {
  const failures = Object.entries(r.connectFailures)
    .map(([k, n]) => `${n}× ${k}`)
    .join(', ')
  return [
    `toys        ${r.connected} of ${r.toys} connected over ${r.brokers} broker(s) in ${r.connectSeconds} s (${r.connectsPerSec}/s)${failures ? `; refused: ${failures}` : ''}`,
    `telemetry   QoS ${r.qos}: ${r.published} published, ${r.acknowledged} acknowledged${r.qos === 1 ? `, ${r.unacknowledged} without PUBACK` : ''} in ${r.durationS} s (${r.msgsPerSec}/s)${r.skipped ? `; ${r.skipped} skipped (window full)` : ''}`,
    r.latencyP50Ms !== null ? `latency     PUBACK p50 ${r.latencyP50Ms} ms, p99 ${r.latencyP99Ms} ms` : undefined,
    `recordings  ${r.recordings.uploaded} uploaded, ${r.recordings.failed} failed, from ${r.recordings.paired} paired toys${Object.keys(r.recordings.errors).length ? ` (${JSON.stringify(r.recordings.errors)})` : ''}`,
    `sessions    ${r.disconnects} dropped during the run; ${r.inboxReceived} inbox messages received`,
    '',
  ]
    .filter((l) => l !== undefined)
    .join('\n')
}
