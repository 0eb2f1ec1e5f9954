import type { ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import mqtt, { type MqttClient } from 'mqtt'
import type { Config } from '../../infra/config.ts'
import { loadDeviceCa } from '../../devices/ca.ts'
import { enrollDevice, type EnrolledDevice } from '../../devices/enroll.ts'
import { openEventStore } from '../../infra/eventstore/open.ts'
import { spawnKennel } from '../../bench/cluster/nodes.ts'

// `kennel start` as a child process (bin/kennel.js: the sources, through tsx) and toys that publish
// QoS 1 messages with unique payloads, remembering the SHA-256 of every one that got its PUBACK.

/** limits far above what the tests send: they measure durability, not rate limiting */
const UNLIMITED = {
  KENNEL_MQTT_PUBLISH_LIMITS: '1000000/second',
  KENNEL_MQTT_BYTE_LIMITS: '1000000000/second',
  KENNEL_MQTT_CONNECT_LIMITS: '100000/minute',
  KENNEL_MQTT_CONNECT_IP_LIMITS: '100000/minute',
}

export interface KennelChild {
  readonly process: ChildProcess
  mqttPort: number
  apiPort: number
  /** stdout and stderr so far, for a failure message */
  output(): string
  /** SIGKILL, resolved once it has exited */
  kill9(): Promise<void>
  /** SIGTERM (a clean stop), resolved with the exit code */
  stop(): Promise<number | null>
}

export function kennelEnv(dataDir: string, env: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: dataDir,
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dataDir,
    KENNEL_MQTT_PORT: '0',
    KENNEL_API_PORT: '0',
    KENNEL_METRICS_PORT: '0',
    KENNEL_LOG_LEVEL: 'warn',
    ...UNLIMITED,
    ...env,
  }
}

export async function startKennelChild(
  t: { teardown(fn: () => unknown): void },
  env: Record<string, string>,
): Promise<KennelChild> {
  const node = await spawnKennel(t, 'kennel start', env)
  if (node.ports.mqtt === undefined || node.ports.api === undefined)
    throw new Error(`kennel start did not listen for MQTT and HTTPS:\n${node.output()}`)
  return {
    process: node.process,
    mqttPort: node.ports.mqtt,
    apiPort: node.ports.api,
    output: node.output,
    kill9: node.kill9,
    stop: node.stop,
  }
}

/** enrol toys in the store the child will open (the store is closed again before it starts) */
export async function enrollToys(config: Config, ids: string[]): Promise<EnrolledDevice[]> {
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
  try {
    const ca = await loadDeviceCa(config)
    const toys: EnrolledDevice[] = []
    for (const id of ids) toys.push(await enrollDevice({ store, ca, config, actor: 'cli:test' }, id))
    return toys
  } finally {
    await store.close()
  }
}

export const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')

/** One toy publishing QoS 1 messages with unique payloads, at most `window` unacknowledged. */
export class PublishingToy {
  readonly acked = new Set<string>()
  readonly client: MqttClient
  closes = 0
  private inFlight = 0
  private stopped = false
  private seq = 0

  constructor(
    private readonly toy: EnrolledDevice,
    port: number,
    options: { reconnectPeriod?: number; clean?: boolean; window?: number } = {},
  ) {
    this.client = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
      key: toy.keyPem,
      cert: toy.certPem,
      ca: toy.caPem,
      clientId: toy.deviceId,
      protocolVersion: 4,
      reconnectPeriod: options.reconnectPeriod ?? 0,
      // CONNACK 3 (server unavailable) while the store is away is worth another try
      reconnectOnConnackError: true,
      clean: options.clean ?? true,
      connectTimeout: 10_000,
    })
    // CONNACK refusals and dropped connections are expected while kennel or its store is away
    this.client.on('error', () => undefined)
    this.client.on('close', () => this.closes++)
    const window = options.window ?? 10
    this.client.once('connect', () => {
      for (let i = 0; i < window; i++) this.next()
    })
  }

  private next(): void {
    if (this.stopped) return
    const payload = `${this.toy.deviceId}:${this.seq++}:${randomBytes(6).toString('hex')}`
    this.inFlight++
    this.client.publish(`toys/${this.toy.deviceId}/telemetry`, payload, { qos: 1 }, (err) => {
      this.inFlight--
      if (err) return
      this.acked.add(sha256(payload))
      this.next()
    })
  }

  /** stop publishing; wait (up to the deadline) for the messages still unacknowledged, then close */
  async stop(drainMs = 0): Promise<void> {
    this.stopped = true
    const deadline = Date.now() + drainMs
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    await this.client.endAsync(true)
  }
}

/** poll a condition with a generous deadline */
export async function until(what: string, check: () => boolean | Promise<boolean>, deadlineMs = 30_000): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
