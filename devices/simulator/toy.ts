import { createHash } from 'node:crypto'
import mqtt, { type MqttClient } from 'mqtt'

// A simulated toy: the client side of R1/R2, for demos and load. It holds its own key and
// certificate, connects over mutual TLS with client id = device id, publishes telemetry on its
// own topics and listens on its inbox. It lives in devices/ because it is a device, not part of
// the backend: nothing in broker/, api/ or projections/ imports it.

export interface ToyCredentials {
  deviceId: string
  keyPem: string
  certPem: string
  caPem: string
}

export interface SimulatedToy {
  readonly deviceId: string
  readonly client: MqttClient
  /** messages received on the toy's inbox */
  readonly inbox: Array<{ topic: string; payload: string }>
  publishTelemetry(sequence: number): Promise<void>
  /** resolves when the broker closes the session (revocation) */
  readonly closed: Promise<void>
  end(): Promise<void>
}

/** Connect a toy; rejects with the refusal (CONNACK code or closed socket) when the broker says no. */
export function connectToy(
  url: string,
  toy: ToyCredentials,
  options: { connectTimeoutMs?: number } = {},
): Promise<SimulatedToy> {
  const client = mqtt.connect(url, {
    key: toy.keyPem,
    cert: toy.certPem,
    ca: toy.caPem,
    clientId: toy.deviceId,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    will: { topic: `toys/${toy.deviceId}/status`, payload: Buffer.from('offline'), qos: 1, retain: false },
  })
  const inbox: SimulatedToy['inbox'] = []
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  return new Promise((resolve, reject) => {
    client.once('error', (err) => (client.end(true), reject(err)))
    client.once('close', () => reject(new Error('the broker closed the connection before CONNACK')))
    client.once('connect', async () => {
      client.removeAllListeners('error')
      client.on('error', () => {})
      client.on('message', (topic, payload) => inbox.push({ topic, payload: payload.toString() }))
      await client.subscribeAsync(`toys/${toy.deviceId}/inbox/#`, { qos: 1 })
      resolve({
        deviceId: toy.deviceId,
        client,
        inbox,
        closed,
        async publishTelemetry(sequence) {
          const payload = JSON.stringify({ sequence, battery: 100 - (sequence % 100), at: new Date().toISOString() })
          await client.publishAsync(`toys/${toy.deviceId}/telemetry`, payload, { qos: 1 })
        },
        end: () => client.endAsync(true),
      })
    })
  })
}

/** what a toy's telemetry looks like in the event log: its SHA-256, never the payload (R19) */
export const payloadDigest = (payload: string): string => createHash('sha256').update(payload).digest('hex')
