import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Worker } from 'node:worker_threads'
import { PROJECTOR_YOUNG_GENERATION_MB, projectorThreadHooks } from '../../bin/projector.ts'
import { startKennel } from '../../bin/start.ts'
import { loadConfig } from '../../infra/config.ts'
import { createLogger } from '../../infra/log.ts'

// What a default `kennel start` (embedded store, no S3 bucket, no Redis) keeps in memory before
// its first toy: the clients it has no use for are loaded on first use only (docs/PERFORMANCE.md).

const UNUSED = [
  '@aws-sdk/client-s3',
  '@aws-sdk/s3-request-presigner',
  '@zxcvbn-ts/language-en',
  '@zxcvbn-ts/language-common',
  'ioredis',
  'mqemitter-redis',
  'aedes-persistence-redis',
  'pg',
  '@eventstore/db-client',
]

t.test(
  'a default kennel start loads neither the S3 SDK, nor the password dictionaries, nor the Redis, PostgreSQL or EventStoreDB clients',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-footprint-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const config = loadConfig({
      KENNEL_ENV: 'test',
      KENNEL_DATA_DIR: dir,
      KENNEL_MQTT_PORT: '0',
      KENNEL_API_PORT: '0',
      KENNEL_METRICS_PORT: '0',
      KENNEL_LOG_LEVEL: 'silent',
    })
    const kennel = await startKennel(config, createLogger('silent'))
    t.teardown(() => kennel.stop())
    // CommonJS packages, however imported, are in the require cache once loaded
    const loaded = Object.keys(createRequire(import.meta.url).cache)
    t.ok(
      loaded.some((f) => f.includes('/node_modules/aedes/') || f.includes('/node_modules/mqtt-packet/')),
      'the cache does list what was loaded',
    )
    for (const pkg of UNUSED)
      t.notOk(
        loaded.some((f) => f.includes(`/node_modules/${pkg}/`)),
        `${pkg} is not loaded`,
      )
  },
)

t.test("the projector's thread runs with a bounded young generation, not V8's default for a big machine", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-footprint-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const started: Worker[] = []
  projectorThreadHooks.onStart = (w) => void started.push(w)
  t.teardown(() => void (projectorThreadHooks.onStart = undefined))
  const config = loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_MQTT_PORT: '0',
    KENNEL_API_PORT: '0',
    KENNEL_METRICS_PORT: '0',
    KENNEL_LOG_LEVEL: 'silent',
  })
  const kennel = await startKennel(config, createLogger('silent'))
  t.teardown(() => kennel.stop())
  t.equal(started.length, 1, 'one projector thread')
  const limit = started[0]!.resourceLimits?.maxYoungGenerationSizeMb
  t.ok(
    limit !== undefined && limit <= PROJECTOR_YOUNG_GENERATION_MB,
    `its young generation is at most ${PROJECTOR_YOUNG_GENERATION_MB} MB (${limit})`,
  )
})
