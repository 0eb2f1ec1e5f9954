import { openEventStore } from '../../infra/eventstore/open.ts'
import { createAuditProjection } from '../../projections/audit/projection.ts'
import { signerFromPem } from '../../projections/audit/keys.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import { deviceActivity } from './helpers.ts'

// Runs the projections over argv[2] into argv[3] in small batches and reports each commit on
// stdout. With argv[5] = N it kills itself with SIGKILL inside the N-th batch, after the events
// were applied and before the checkpoint is committed.
const [url, readModelFile, keyPem, killAt] = process.argv.slice(2) as [string, string, string, string | undefined]
const store = await openEventStore(url, { environment: 'test' })
const readModels = openSqliteReadModels(readModelFile)
let batches = 0
const runner = await startProjectionRunner({
  store,
  readModels,
  projections: [
    deviceActivity,
    createAuditProjection({
      signer: signerFromPem(Buffer.from(keyPem, 'base64').toString()),
      headEveryEvents: 64,
      headEverySeconds: 86400,
    }),
  ],
  batchSize: 37,
  beforeCommit: () => {
    if (killAt !== undefined && ++batches === Number(killAt)) process.kill(process.pid, 'SIGKILL')
  },
  onCommit: (position) => void process.stdout.write(`${position}\n`),
})
await runner.caughtUp
process.stdout.write('caught-up\n')
await runner.stop()
await store.close()
await readModels.close()
