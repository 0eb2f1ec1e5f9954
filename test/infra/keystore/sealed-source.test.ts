import { randomBytes, randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { KeyRing } from '../../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../../infra/keystore/files.ts'
import type { KeyStore } from '../../../infra/keystore/port.ts'
import { HouseholdSources, householdOfSource, type SealedSource } from '../../../infra/keystore/sealed-source.ts'

// A paired toy's address, sealed with its household's key (R12): what the broker and the device
// API record, and what ops and exports open.

function sources(t: { teardown(fn: () => unknown): void }, options: { now?: () => number } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-sources-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = fileKeyStore(dir)
  let reads = 0
  const counted: KeyStore = {
    kind: store.kind,
    recheckMs: store.recheckMs,
    read: (r, o) => (reads++, store.read(r, o)),
    create: (r, o, w) => store.create(r, o, w),
    shred: (r, o) => store.shred(r, o),
    close: () => store.close(),
  }
  const master = randomBytes(32)
  return {
    households: new HouseholdSources(new KeyRing(counted, master, 'household-data'), options),
    reads: () => reads,
    other: new HouseholdSources(new KeyRing(store, master, 'household-data')),
  }
}

t.test(
  'an unpaired toy keeps its address in clear; a paired one is sealed for its household and opens with its key',
  async (t) => {
    const { households, other } = sources(t)
    t.same(await households.source(undefined, '203.0.113.9'), { sourceIp: '203.0.113.9' })
    const household = randomUUID()
    const sealed = (await households.source(household, '::ffff:203.0.113.9')) as SealedSource
    t.match(sealed, {
      sourceIpSealed: /^[A-Za-z0-9+/]+=*$/,
      sourceIpTag: /^[A-Za-z0-9_-]{22}$/,
      sourceIpOwner: `household:${household}`,
    })
    t.notOk(JSON.stringify(sealed).includes('203.0.113.9'), 'nothing in clear')
    t.equal(householdOfSource(sealed as unknown as Record<string, unknown>), household)
    t.equal(householdOfSource({ sourceIpSealed: 'x' }), undefined, "a person's sealed address names no household")
    t.equal(
      await other.open(household, sealed.sourceIpSealed),
      '203.0.113.9',
      'another process sharing the key store opens it',
    )
    const neighbour = randomUUID()
    await households.source(neighbour, '192.0.2.4')
    await t.rejects(
      other.open(neighbour, sealed.sourceIpSealed),
      'bound to its household: it does not open as another one',
    )
    t.equal(await other.open(randomUUID(), sealed.sourceIpSealed), undefined, 'a household with no key opens nothing')
    const elsewhere = (await households.source(household, '198.51.100.1')) as SealedSource
    t.not(elsewhere.sourceIpTag, sealed.sourceIpTag, 'another address, another tag')
    t.equal(
      ((await households.source(household, '203.0.113.9')) as SealedSource).sourceIpTag,
      sealed.sourceIpTag,
      'the same address, the same tag',
    )
  },
)

t.test(
  'the key is read once per household while cached; after the household key is shredded nothing is recorded and nothing opens',
  async (t) => {
    let clock = 1_000_000
    const { households, reads, other } = sources(t, { now: () => clock })
    const household = randomUUID()
    const first = (await households.source(household, '203.0.113.9')) as SealedSource
    const afterFirst = reads()
    for (let i = 0; i < 50; i++) await households.source(household, i % 2 === 0 ? '203.0.113.9' : '198.51.100.1')
    t.equal(reads(), afterFirst, 'no key-store read per connect in the steady state')
    clock += 11 * 60_000
    await households.source(household, '203.0.113.9')
    t.equal(reads(), afterFirst + 1, 'read again once the cache time is over')

    await other.shred(household)
    t.equal(
      await other.open(household, first.sourceIpSealed),
      undefined,
      'the shredding process reads it as erased at once',
    )
    t.equal(
      await households.open(household, first.sourceIpSealed),
      undefined,
      'and so does any other: opening always asks the key store',
    )
    clock += 11 * 60_000
    t.same(
      await households.source(household, '203.0.113.9'),
      {},
      'an erased household records no address, and gets no new key',
    )
  },
)
