import { Redis } from 'ioredis'
import MQEmitterRedis from 'mqemitter-redis'
import redisPersistence from 'aedes-persistence-redis'

// Cluster mode (PRODUCT "Scale-out path"): brokers share message routing (mqemitter-redis,
// Redis pub/sub) and sessions, retained messages and wills (aedes-persistence-redis). Rate-limit
// counters live in the same Redis. Redis is inside the trust boundary: whoever can publish on
// its channels can inject messages, so it must be private and, in production, rediss:// (R7).

export interface ClusterParts {
  mq: unknown
  persistence: unknown
  /** for rate-limiter-flexible */
  rateLimitClient: Redis
  close(): Promise<void>
}

export interface ClusterOptions {
  redisUrl: string
  /** key prefix for sessions and rate limits, so that deployments (or test runs) sharing a Redis stay apart */
  keyPrefix?: string
}

export function createClusterParts({ redisUrl, keyPrefix = 'kennel:' }: ClusterOptions): ClusterParts {
  const mq = MQEmitterRedis({ connectionString: redisUrl })
  const persistenceConn = new Redis(redisUrl, { keyPrefix })
  const rateLimitClient = new Redis(redisUrl, { enableOfflineQueue: false })
  return {
    mq,
    persistence: redisPersistence({ conn: persistenceConn }),
    rateLimitClient,
    async close() {
      // the mq is closed by Aedes; the persistence connection is closed here
      persistenceConn.disconnect()
      rateLimitClient.disconnect()
    },
  }
}
