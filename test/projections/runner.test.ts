import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { AuditCatchUpThreads, MIN_CATCH_UP } from '../../projections/audit/catch-up-threads.ts'
import { createAuditProjection } from '../../projections/audit/projection.ts'
import { rebuildProjections } from '../../projections/rebuild.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import type { Projection } from '../../projections/projection.ts'
import { appendAll, deviceActivity, dumpReadModels, sandbox, testKeys, traffic, type Sandbox } from './helpers.ts'

const here = path.dirname(fileURLToPath(import.meta.url))

t.test(
  'given events in the store, when the runner starts, then the read model is built, stored and resumed from its checkpoint',
  async (t) => {
    const { store, readModels } = await sandbox(t)
    await appendAll(store, traffic(500))
    const runner = await startProjectionRunner({ store, readModels, projections: [deviceActivity], batchSize: 64 })
    await runner.caughtUp
    t.equal(runner.position, 500)
    const total = [...runner.docs.values<{ count: number }>('activity')].reduce((n, d) => n + d.count, 0)
    t.equal(total, 500, 'every event applied once')
    await runner.stop()
    t.equal((await readModels.load('device-activity'))?.position, 500, 'checkpoint stored')

    await appendAll(store, traffic(100, 7))
    const again = await startProjectionRunner({ store, readModels, projections: [deviceActivity] })
    await again.caughtUp
    t.equal(
      [...again.docs.values<{ count: number }>('activity')].reduce((n, d) => n + d.count, 0),
      600,
      'resumed: the first 500 are not applied twice',
    )
    const { position } = await store.append('mqtt-toy-1', [{ type: 'PublishAccepted', data: { deviceId: 'toy-1' } }])
    await again.waitFor(position)
    t.equal(
      again.docs.get<{ last: number }>('activity', 'toy-1')?.last,
      position,
      'live events are applied; waitFor gives read-your-writes',
    )
    t.same(await again.lag(), { events: 0, seconds: 0 }, 'no lag when caught up')
    await again.stop()
  },
)

t.test('a stored read model of another version is rebuilt from zero', async (t) => {
  const { store, readModels } = await sandbox(t)
  await appendAll(store, traffic(50))
  const v1 = await startProjectionRunner({ store, readModels, projections: [deviceActivity] })
  await v1.caughtUp
  await v1.stop()
  const v2: Projection = { ...deviceActivity, version: 2, apply: (tx, e) => tx.put('seen', e.id, true) }
  const runner = await startProjectionRunner({ store, readModels, projections: [v2] })
  await runner.caughtUp
  t.equal([...runner.docs.values('activity')].length, 0, 'old documents are gone')
  t.equal([...runner.docs.values('seen')].length, 50, 'every event applied by the new version')
  await runner.stop()
})

t.test('rebuilding from zero gives the same read models as building incrementally', async (t) => {
  const { store, readModels, dir } = await sandbox(t)
  const { signer } = testKeys()
  const projections = [deviceActivity, createAuditProjection({ signer, headEveryEvents: 50, headEverySeconds: 86400 })]
  const runner = await startProjectionRunner({ store, readModels, projections, batchSize: 30 })
  await runner.caughtUp
  for (let i = 0; i < 5; i++) await appendAll(store, traffic(113, i + 1))
  await runner.waitFor(await store.headPosition())
  await runner.stop()
  // the heads raised while running are events too; let the incremental model see all of them
  const settle = await startProjectionRunner({ store, readModels, projections })
  await settle.caughtUp
  await settle.stop()

  const fresh = openSqliteReadModels(path.join(dir, 'rebuilt.sqlite'))
  t.teardown(() => fresh.close())
  const progress: number[] = []
  const result = await rebuildProjections({
    store,
    readModels: fresh,
    projections,
    onProgress: (p) => progress.push(p),
  })
  t.equal(result.head, await store.headPosition(), 'a rebuild raises no new heads: their ids already exist')
  t.ok(progress.length > 0 && progress.at(-1) === result.head, 'progress reaches the head')
  const names = projections.map((p) => p.name)
  t.same(await dumpReadModels(fresh, names), await dumpReadModels(readModels, names))
})

/** a projection with a bug: it throws at the event at `at`, every time it is given it */
const failingAt = (at: number): Projection => ({
  name: 'fails',
  version: 1,
  eventTypes: ['PublishAccepted'],
  apply(tx, e) {
    tx.put('seen', e.id, { position: e.position })
    if (e.position === at) throw new Error(`projection bug at ${at}`)
  },
})

/** the rebuild's outcome, or 'hung' when it has neither finished nor failed after 60 s */
const outcome = (p: Promise<unknown>): Promise<unknown> =>
  Promise.race([
    p.then(
      () => 'finished',
      (err: unknown) => err,
    ),
    new Promise((r) => setTimeout(r, 60_000, 'hung').unref()),
  ])

t.test(
  'a rebuild whose projection throws fails with that error instead of retrying for ever, and stores nothing of the failing event',
  async (t) => {
    const { store, readModels } = await sandbox(t)
    await appendAll(store, traffic(300))
    const at = (await store.readAll({ after: 200, maxCount: 50, filter: { types: ['PublishAccepted'] } })).at(
      -1,
    )!.position
    const failed = await outcome(rebuildProjections({ store, readModels, projections: [failingAt(at)], batchSize: 64 }))
    t.ok(
      failed instanceof Error && failed.message === `projection bug at ${at}`,
      `the rebuild rejects with the projection's error (got ${String(failed)})`,
    )
    const stored = await readModels.load('fails')
    t.ok((stored?.position ?? 0) < at, 'the checkpoint stays before the failing event')
    const seen = (stored?.docs ?? []).map(([, , doc]) => (doc as { position: number }).position)
    t.ok(
      seen.every((p) => p <= (stored?.position ?? 0)),
      'no document written past the checkpoint (half of the failing event is not kept)',
    )
  },
)

t.test('a rebuild in bulk (catch-up threads) whose other projection throws fails with that error', async (t) => {
  const { store, readModels } = await sandbox(t)
  await appendAll(store, traffic(MIN_CATCH_UP + 2000))
  const { signer } = testKeys()
  const at = (await store.readAll({ after: MIN_CATCH_UP / 2, maxCount: 1, filter: { types: ['PublishAccepted'] } }))[0]!
    .position
  const projections = [createAuditProjection({ signer, headEveryEvents: 5000, headEverySeconds: 86400 }), failingAt(at)]
  const failed = await outcome(rebuildProjections({ store, readModels, projections }))
  t.ok(
    failed instanceof Error && failed.message === `projection bug at ${at}`,
    `the rebuild rejects with the projection's error (got ${String(failed)})`,
  )
  t.ok(((await readModels.load('fails'))?.position ?? 0) < at, 'the checkpoint stays before the failing event')
})

t.test(
  'a server runner whose projection throws once retries from its last commit and applies no event twice',
  async (t) => {
    const { store, readModels } = await sandbox(t)
    await appendAll(store, traffic(300))
    let thrown = false
    const at = 150
    const counting: Projection = {
      name: 'counting',
      version: 1,
      eventTypes: ['DeviceConnected', 'PublishAccepted'],
      apply(tx, e) {
        // changes the document before it fails: the change must not be kept
        tx.put('total', 'all', { count: (tx.get<{ count: number }>('total', 'all')?.count ?? 0) + 1 })
        if (e.position === at && !thrown)
          (thrown = true),
            (() => {
              throw new Error('transient bug')
            })()
      },
    }
    const runner = await startProjectionRunner({ store, readModels, projections: [counting], batchSize: 64 })
    await runner.waitFor(300, 30_000)
    t.ok(thrown, 'the projection failed once')
    t.equal(runner.docs.get<{ count: number }>('total', 'all')?.count, 300, 'every event counted once in memory')
    await runner.stop()
    const stored = await readModels.load('counting')
    t.equal(stored?.position, 300)
    t.same(
      stored?.docs.map(([, , doc]) => doc),
      [{ count: 300 }],
      'every event counted once in the stored read model',
    )
  },
)

t.test('a live commit that fails is retried from the stored checkpoint: no change is lost', async (t) => {
  const { store, readModels } = await sandbox(t)
  let refused = false
  let commits = 0
  const runner = await startProjectionRunner({
    store,
    readModels,
    projections: [deviceActivity],
    batchSize: 10_000,
    beforeCommit: (position) => {
      if (position > 0 && !refused)
        (refused = true),
          (() => {
            throw new Error('disk full')
          })()
      commits++
    },
  })
  await runner.caughtUp
  await appendAll(store, traffic(50))
  await appendAll(store, traffic(50, 3))
  await runner.waitFor(100, 30_000)
  t.ok(refused && commits > 0, 'the first commit of events was refused, a later one was not')
  await runner.stop()
  const stored = await readModels.load('device-activity')
  t.equal(stored?.position, 100)
  const total = (stored?.docs ?? []).reduce((n, [, , doc]) => n + (doc as { count: number }).count, 0)
  t.equal(total, 100, 'every event counted once in the stored read model, those of the refused commit too')
})

interface ChildRun {
  lines: string[]
  signal: NodeJS.Signals | null
}

function runChild(url: string, file: string, key: string, killAt?: number, killAfterLines?: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const args = [
      '--import',
      'tsx',
      path.join(here, 'crash-child.ts'),
      url,
      file,
      key,
      ...(killAt !== undefined ? [String(killAt)] : []),
    ]
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    const lines: string[] = []
    let buf = ''
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      const parts = buf.split('\n')
      buf = parts.pop()!
      lines.push(...parts)
      if (killAfterLines !== undefined && lines.length >= killAfterLines) child.kill('SIGKILL')
    })
    child.on('error', reject)
    child.on('exit', (_code, signal) => resolve({ lines, signal }))
  })
}

t.test('a crash between applying and checkpointing neither applies an event twice nor skips one', async (t) => {
  const { store, readModels, url, readModelFile, dir } = await sandbox(t)
  await readModels.close()
  const { privateKeyPem } = testKeys()
  const key = Buffer.from(privateKeyPem).toString('base64')
  await appendAll(store, traffic(3000))

  // killed inside the 5th, then the 9th batch of each run (after apply, before commit), then at
  // an arbitrary moment by the parent
  for (const killAt of [5, 9]) {
    const run = await runChild(url, readModelFile, key, killAt)
    t.equal(run.signal, 'SIGKILL', `killed in batch ${killAt}`)
    t.notOk(run.lines.includes('caught-up'))
  }
  const killed = await runChild(url, readModelFile, key, undefined, 20)
  t.ok(killed.signal === 'SIGKILL' || killed.lines.includes('caught-up'), 'killed mid-run by the parent')
  await appendAll(store, traffic(500, 3))
  for (let i = 0; i < 3; i++)
    t.ok((await runChild(url, readModelFile, key)).lines.includes('caught-up'), 'restart catches up')

  await restartedEqualsRebuild(t, { store, readModelFile, dir }, privateKeyPem, 3500)
})

t.test(
  'a crash during a catch-up in bulk (catch-up threads) neither applies an event twice nor skips one',
  async (t) => {
    const { store, readModels, url, readModelFile, dir } = await sandbox(t)
    await readModels.close()
    const { privateKeyPem } = testKeys()
    const key = Buffer.from(privateKeyPem).toString('base64')
    const n = MIN_CATCH_UP + 3000
    await appendAll(store, traffic(n))

    for (const killAt of [3, 40]) {
      const run = await runChild(url, readModelFile, key, killAt)
      t.equal(run.signal, 'SIGKILL', `killed in batch ${killAt}`)
    }
    const killed = await runChild(url, readModelFile, key, undefined, 100)
    t.ok(killed.signal === 'SIGKILL' || killed.lines.includes('caught-up'), 'killed mid-run by the parent')
    // the first restart catches up and appends the heads it raised; the next ones apply those
    for (let i = 0; i < 3; i++)
      t.ok((await runChild(url, readModelFile, key)).lines.includes('caught-up'), 'restart catches up')

    const chunks = AuditCatchUpThreads.chunksProvided
    await restartedEqualsRebuild(t, { store, readModelFile, dir }, privateKeyPem, n)
    t.ok(AuditCatchUpThreads.chunksProvided > chunks, 'the reference rebuild went through the catch-up threads too')
  },
)

/** the read models the killed and restarted children left equal a rebuild, with every one of
 * the `events` device events counted once */
async function restartedEqualsRebuild(
  t: Test,
  sb: Pick<Sandbox, 'store' | 'readModelFile' | 'dir'>,
  privateKeyPem: string,
  events: number,
): Promise<void> {
  const after = openSqliteReadModels(sb.readModelFile)
  t.teardown(() => after.close())
  const fresh = openSqliteReadModels(path.join(sb.dir, 'rebuilt.sqlite'))
  t.teardown(() => fresh.close())
  const { signerFromPem } = await import('../../projections/audit/keys.ts')
  const projections = [
    deviceActivity,
    createAuditProjection({ signer: signerFromPem(privateKeyPem), headEveryEvents: 64, headEverySeconds: 86400 }),
  ]
  const rebuilt = await rebuildProjections({ store: sb.store, readModels: fresh, projections })
  t.equal((await after.load('audit'))?.position, rebuilt.head, 'the restarted runner reached the head')
  const names = projections.map((p) => p.name)
  t.same(
    await dumpReadModels(after, names),
    await dumpReadModels(fresh, names),
    'the restarted read model equals a rebuild',
  )
  const activity = await after.load('device-activity')
  const counted = activity!.docs.reduce((n, [, , d]) => n + (d as { count: number }).count, 0)
  t.equal(counted, events, `each of the ${events} device events counted exactly once`)
}
