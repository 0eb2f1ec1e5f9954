import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { KeyRing } from '../../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../../infra/keystore/files.ts'
import { keyStoreContract } from './contract.ts'

t.test('contract: files', async (t) => {
  keyStoreContract(t, {
    async fresh(t) {
      const dir = t.testdir()
      return { open: async () => fileKeyStore(dir) }
    },
  })
})

t.test('keys are files only their owner can read, where the embedded deployment has always kept them', async (t) => {
  const dir = t.testdir()
  const master = randomBytes(32)
  await new KeyRing(fileKeyStore(dir), master, 'person').keyFor('alice')
  await new KeyRing(fileKeyStore(dir), master, 'household-data').keyFor('h1')
  t.equal(fs.statSync(path.join(dir, 'keys', 'persons', 'alice.key')).mode & 0o777, 0o600)
  t.equal(fs.statSync(path.join(dir, 'blobs', 'keys', 'h1.key')).mode & 0o777, 0o600)
  t.equal(fs.statSync(path.join(dir, 'keys', 'persons')).mode & 0o077, 0, 'the directory is closed to others')
})

t.test(
  'a key file beside a tombstone (a creation that lost a race with a shred) reads as shredded and is removed',
  async (t) => {
    const dir = t.testdir()
    const master = randomBytes(32)
    const ring = new KeyRing(fileKeyStore(dir), master, 'person')
    const file = path.join(dir, 'keys', 'persons', 'alice.key')
    await ring.keyFor('alice')
    const wrapped = fs.readFileSync(file)
    await ring.shred('alice')
    fs.writeFileSync(file, wrapped, { mode: 0o600 })
    t.equal(await ring.existingKey('alice'), undefined)
    t.notOk(fs.existsSync(file))
  },
)
