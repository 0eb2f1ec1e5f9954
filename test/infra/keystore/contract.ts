import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import { KeyRing } from '../../../infra/blobstore/keys.ts'
import { isKennelError } from '../../../infra/errors.ts'
import type { KeyStore } from '../../../infra/keystore/port.ts'

// The key-store contract, written once and run against every adapter (files, PostgreSQL), through
// the KeyRing that uses it. Two stores opened on one backing stand for two processes or nodes.

export interface KeyStoreTarget {
  /** a fresh, empty backing; each open() is another process's view of it */
  fresh(t: Test): Promise<{ open(): Promise<KeyStore> }>
}

const master = randomBytes(32)

async function twoNodes(t: Test, target: KeyStoreTarget): Promise<[KeyStore, KeyStore]> {
  const backing = await target.fresh(t)
  const a = await backing.open()
  const b = await backing.open()
  t.teardown(async () => {
    await a.close()
    await b.close()
  })
  return [a, b]
}

const shredded = (err: unknown): boolean => isKennelError(err, 'KENNEL_ERR_KEY_SHREDDED')
const SHREDDED = { code: 'KENNEL_ERR_KEY_SHREDDED' }

export function keyStoreContract(t: Test, target: KeyStoreTarget): void {
  t.test('a key is made on first use and is the same one on every node', async (t) => {
    const [a, b] = await twoNodes(t, target)
    const key = await new KeyRing(a, master, 'person').keyFor('alice')
    t.equal(key.length, 32)
    t.same(await new KeyRing(a, master, 'person').keyFor('alice'), key, 'again on this node')
    t.same(await new KeyRing(b, master, 'person').keyFor('alice'), key, 'on the other node')
    t.same(await new KeyRing(b, master, 'person').existingKey('alice'), key)
  })

  t.test("two nodes creating one owner's key at once end up with one key", async (t) => {
    const [a, b] = await twoNodes(t, target)
    const owners = Array.from({ length: 20 }, (_, i) => `owner-${i}`)
    const ringA = new KeyRing(a, master, 'household-data')
    const ringB = new KeyRing(b, master, 'household-data')
    const keys = await Promise.all(owners.flatMap((o) => [ringA.keyFor(o), ringB.keyFor(o)]))
    for (let i = 0; i < owners.length; i++) t.same(keys[2 * i], keys[2 * i + 1], `owner-${i}`)
    t.equal(new Set(keys.map((k) => k.toString('hex'))).size, owners.length, 'one key per owner')
  })

  t.test('existingKey never creates a key', async (t) => {
    const [a] = await twoNodes(t, target)
    t.equal(await new KeyRing(a, master, 'person').existingKey('nobody'), undefined)
    t.equal(await a.read('person', 'nobody'), undefined, 'nothing stored')
  })

  t.test('only wrapped keys are stored: the store alone, or another master key, opens nothing', async (t) => {
    const [a] = await twoNodes(t, target)
    const key = await new KeyRing(a, master, 'person').keyFor('alice')
    const stored = await a.read('person', 'alice')
    t.equal(stored?.state, 'live')
    t.notOk(stored?.state === 'live' && stored.wrapped.includes(key), 'the key is not stored in clear')
    await t.rejects(
      new KeyRing(a, randomBytes(32), 'person').existingKey('alice'),
      'another master key cannot unwrap it',
    )
  })

  t.test('rings are apart: the same owner has another key in each, and a shred touches one', async (t) => {
    const [a] = await twoNodes(t, target)
    const person = await new KeyRing(a, master, 'person').keyFor('x-1')
    const household = await new KeyRing(a, master, 'household-data').keyFor('x-1')
    t.notSame(person, household)
    await new KeyRing(a, master, 'person').shred('x-1')
    t.same(await new KeyRing(a, master, 'household-data').existingKey('x-1'), household)
  })

  t.test('a shred on one node holds on every node: the key is gone and no new one is ever made', async (t) => {
    const [a, b] = await twoNodes(t, target)
    const key = await new KeyRing(a, master, 'person').keyFor('alice')
    await new KeyRing(a, master, 'person').shred('alice')
    for (const [node, store] of [
      ['this node', a],
      ['the other node', b],
    ] as const) {
      const ring = new KeyRing(store, master, 'person')
      t.equal(await ring.existingKey('alice'), undefined, `${node}: erased`)
      await t.rejects(ring.keyFor('alice'), SHREDDED, `${node}: keyFor refuses rather than make a new key`)
      t.equal(await ring.existingKey('alice'), undefined, `${node}: still erased`)
    }
    const stored = await b.read('person', 'alice')
    t.same(stored, { state: 'shredded' }, 'a tombstone, without the wrapped key')
    t.notOk(JSON.stringify(stored).includes(key.toString('base64')))
  })

  t.test('shredding is idempotent and also forbids a key that was never made', async (t) => {
    const [a] = await twoNodes(t, target)
    const ring = new KeyRing(a, master, 'household-data')
    await ring.shred('h-never')
    await ring.shred('h-never')
    await t.rejects(ring.keyFor('h-never'), SHREDDED)
  })

  t.test('a creation racing a shred never leaves a live key behind', async (t) => {
    const [a, b] = await twoNodes(t, target)
    const owners = Array.from({ length: 20 }, (_, i) => `race-${i}`)
    await Promise.all(
      owners.flatMap((o) => [
        new KeyRing(a, master, 'person')
          .keyFor(o)
          .catch((err: unknown) => (shredded(err) ? undefined : Promise.reject(err))),
        new KeyRing(b, master, 'person').shred(o),
      ]),
    )
    for (const o of owners) {
      t.equal(await new KeyRing(a, master, 'person').existingKey(o), undefined, `${o} stays erased`)
      await t.rejects(new KeyRing(b, master, 'person').keyFor(o), SHREDDED)
    }
  })

  t.test(
    "a node that used a key stops using it once another node shredded it, within the store's recheck bound",
    async (t) => {
      const [a, b] = await twoNodes(t, target)
      let now = Date.parse('2030-01-01T00:00:00Z')
      const clock = { now: () => new Date(now) }
      const onB = new KeyRing(b, master, 'person', clock)
      const key = await onB.keyFor('alice')
      await new KeyRing(a, master, 'person').shred('alice')
      now += b.recheckMs
      t.equal(await onB.existingKey('alice'), undefined, `erased on the other node ${b.recheckMs} ms later at most`)
      await t.rejects(onB.keyFor('alice'), SHREDDED)
      t.ok(key.length === 32)
    },
  )

  t.test('a shred on this node holds at once, whatever the bound', async (t) => {
    const [a] = await twoNodes(t, target)
    const ring = new KeyRing(a, master, 'person', { now: () => new Date(0) })
    await ring.keyFor('alice')
    await ring.shred('alice')
    t.equal(await ring.existingKey('alice'), undefined)
  })

  t.test('an owner that is not a plain id is refused', async (t) => {
    const [a] = await twoNodes(t, target)
    for (const owner of ['../master', '', 'a b', 'x'.repeat(101)]) {
      await t.rejects(
        new KeyRing(a, master, 'person').keyFor(owner),
        { code: 'KENNEL_ERR_VALIDATION' },
        JSON.stringify(owner),
      )
    }
  })
}
