import t from 'tap'
import { loadConfig } from '../../infra/config.ts'
import { projectorLag } from '../../projections/lag.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import { persistentProjectionNames, persistentProjections } from '../../bin/read-models.ts'
import { appendAll, deviceActivity, sandbox, testKeys, traffic } from './helpers.ts'

// The projector's lag as another process sees it: the store's head against the checkpoints in
// the read-model store, read through a connection of its own. That both stores give every
// connection the stored checkpoints is the read-model contract's (test/projections/readmodels/contract.ts).

t.test(
  'another connection reads the lag from the stored checkpoints: behind while stopped, none once caught up',
  async (t) => {
    const { store, readModels, readModelFile } = await sandbox(t)
    const observer = openSqliteReadModels(readModelFile)
    t.teardown(() => observer.close())
    const names = [deviceActivity.name, 'never-run']
    const runner = await startProjectionRunner({ store, readModels, projections: [deviceActivity] })
    await appendAll(store, traffic(50))
    await runner.waitFor(await store.headPosition())
    await runner.stop()
    await appendAll(store, traffic(30, 2))

    const lag = await projectorLag(store, observer, names)
    t.equal(lag.head, 80)
    t.same(lag.projections, [
      { name: deviceActivity.name, position: 50, behind: 30 },
      { name: 'never-run', position: 0, behind: 80 },
    ])
    t.equal(lag.behind, 80, 'a projection with no checkpoint is behind by the whole store')

    const again = await startProjectionRunner({ store, readModels, projections: [deviceActivity] })
    await again.waitFor(80)
    await again.stop()
    t.same((await projectorLag(store, observer, [deviceActivity.name])).behind, 0)
  },
)

t.test('the names known without a signing key are those of the persistent projections', async (t) => {
  const config = loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: t.testdirName })
  t.same(
    persistentProjectionNames(),
    persistentProjections(config, testKeys().signer).map((p) => p.name),
  )
})
