import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { Aedes } from 'aedes'
import type { Config } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { inboxTopic } from './authorize.ts'
import { createClusterParts } from './cluster.ts'
import { type InboxMessagePublished, mqttStream } from './events.ts'

// How an API node without a broker of its own reaches toys (KENNEL_ROLES=api): an Aedes with the
// cluster's Redis message bus and persistence but no listener, so no client ever connects to it.
// A message published here is routed by every broker of the cluster to the toy's live session,
// and queued for its offline persistent session, exactly as a broker's own publishToDevice does.
// It has no hooks: it only publishes what bin/ hands it, under toys/{id}/inbox/ (R2).

export interface InboxPublisher {
  publishToDevice(
    deviceId: string,
    subtopic: string,
    payload: Buffer | string,
    options?: { qos?: 0 | 1 },
  ): Promise<void>
  close(): Promise<void>
}

export interface InboxPublisherOptions {
  config: Pick<Config, 'redisUrl' | 'maxPayloadBytes'>
  store: EventStore
  log: Logger
  /** the brokers' Redis key prefix (default `kennel:`) */
  clusterKeyPrefix?: string
}

export async function createInboxPublisher(o: InboxPublisherOptions): Promise<InboxPublisher> {
  if (o.config.redisUrl === undefined)
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      "an API without a broker reaches toys through the cluster's Redis: set KENNEL_REDIS_URL",
    )
  const cluster = createClusterParts({ redisUrl: o.config.redisUrl, keyPrefix: o.clusterKeyPrefix })
  try {
    await connected(cluster.mq)
  } catch (err) {
    await new Promise<void>((resolve) => (cluster.mq as { close(cb: () => void): void }).close(resolve))
    await cluster.close()
    throw err
  }
  const aedes = new Aedes({ mq: cluster.mq as never, persistence: cluster.persistence as never })
  await aedes.listen()
  let closed = false
  return {
    async publishToDevice(deviceId, subtopic, payload, options = {}) {
      if (closed) throw new KennelError('KENNEL_ERR_UNAVAILABLE', 'the inbox publisher is closed')
      const target = inboxTopic(deviceId, subtopic)
      if (!target.ok || target.topic === undefined)
        throw new KennelError('KENNEL_ERR_TOPIC_DENIED', target.ok ? 'invalid topic' : target.reason)
      const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
      if (buf.length > o.config.maxPayloadBytes)
        throw new KennelError('KENNEL_ERR_PAYLOAD_TOO_LARGE', `payload larger than ${o.config.maxPayloadBytes} bytes`)
      const qos = options.qos ?? 1
      await new Promise<void>((resolve, reject) => {
        aedes.publish(
          { cmd: 'publish', topic: target.topic!, payload: buf, qos, retain: false, dup: false },
          (err?: Error) => (err ? reject(err) : resolve()),
        )
      })
      const event: InboxMessagePublished = {
        type: 'InboxMessagePublished',
        data: {
          deviceId,
          topic: target.topic,
          qos,
          bytes: buf.length,
          sha256: createHash('sha256').update(buf).digest('hex'),
        },
      }
      await o.store
        .append(mqttStream(deviceId), [{ ...event, metadata: { actor: 'system:broker' } }])
        .catch((err: unknown) => o.log.error({ err, deviceId }, 'could not record an inbox message'))
    },
    async close() {
      if (closed) return
      closed = true
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await cluster.close()
    },
  }
}

/** how long start-up waits for the cluster's Redis */
const CONNECT_DEADLINE_MS = 10_000

/** Both connections of the message bus ready: a subscription sent while the subscriber
 * connection is still connecting puts it in subscriber mode before ioredis's ready check, which
 * then fails ("Connection in subscriber mode"). A broker subscribes long after its bus is up. */
async function connected(mq: unknown): Promise<void> {
  const { subConn, pubConn } = mq as {
    subConn: { status: string } & NodeJS.EventEmitter
    pubConn: { status: string } & NodeJS.EventEmitter
  }
  const signal = AbortSignal.timeout(CONNECT_DEADLINE_MS)
  try {
    await Promise.all([subConn, pubConn].map((c) => (c.status === 'ready' ? undefined : once(c, 'ready', { signal }))))
  } catch (err) {
    throw new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `the cluster's Redis (KENNEL_REDIS_URL) did not answer within ${CONNECT_DEADLINE_MS / 1000} s`,
      undefined,
      { cause: err },
    )
  }
}
