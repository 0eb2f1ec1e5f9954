import { randomBytes } from 'node:crypto'
import t from 'tap'
import { openEventStore } from '../../../infra/eventstore/open.ts'
import { eventStoreContract } from './contract.ts'

// No EventStoreDB can run on the development machines: the contract runs against the server
// named by KENNEL_TEST_ESDB_URL (e.g. esdb://127.0.0.1:2113?tls=false), each store in a fresh namespace.
const base = process.env.KENNEL_TEST_ESDB_URL

if (!base) {
  t.plan(0, 'KENNEL_TEST_ESDB_URL is not set: no EventStoreDB server to test against')
} else {
  t.test('contract: EventStoreDB/KurrentDB', async (t) => {
    eventStoreContract(t, {
      async fresh() {
        const url = `${base}${base.includes('?') ? '&' : '?'}namespace=test_${randomBytes(6).toString('hex')}`
        return { url, open: (environment = 'test') => openEventStore(url, { environment }) }
      },
    })
  })
}
