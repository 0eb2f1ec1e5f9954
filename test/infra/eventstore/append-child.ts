import { randomUUID } from 'node:crypto'
import { openEventStore } from '../../../infra/eventstore/open.ts'

// Appends two-event batches from 8 concurrent loops and reports each acknowledged event id on
// stdout, until the parent kills it with SIGKILL (the durability test of the contract suite).
const store = await openEventStore(process.argv[2]!, { environment: 'test' })
await Promise.all(
  Array.from({ length: 8 }, async (_, w) => {
    for (let i = 0; ; i++) {
      const ids = [randomUUID(), randomUUID()]
      await store.append(
        `durable-${w}`,
        ids.map((id, k) => ({ id, type: 'Durable', data: { w, i, k } })),
      )
      process.stdout.write(`${ids[0]}\n${ids[1]}\n`)
    }
  }),
)
