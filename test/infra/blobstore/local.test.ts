import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Fastify from 'fastify'
import t from 'tap'
import { blobRoutes } from '../../../api/blobs/routes.ts'
import { registerErrorHandling } from '../../../api/plugins/errors.ts'
import { LocalBlobStore } from '../../../infra/blobstore/local.ts'
import { newObjectKey } from '../../../infra/blobstore/port.ts'
import { blobStoreContract } from './contract.ts'

blobStoreContract(t, 'embedded encrypted store', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-blobs-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  let now = new Date()
  const store = new LocalBlobStore({ dir, masterKey: randomBytes(32), now: () => now })
  const app = Fastify()
  registerErrorHandling(app)
  await app.register(blobRoutes, { blobs: store })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return {
    store,
    verifiesSignatures: true,
    setNow: (d) => (now = d),
    async fetch(p, body, extra) {
      const res = await fetch(p.url.startsWith('/') ? base + p.url : p.url, { method: p.method, headers: { ...p.headers, ...extra }, ...(body ? { body: new Uint8Array(body) } : {}) })
      return { status: res.status, body: Buffer.from(await res.arrayBuffer()) }
    },
  }
})

t.test('embedded store: objects are encrypted at rest with the household key (R12)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-blobs-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = new LocalBlobStore({ dir, masterKey: randomBytes(32) })
  const key = newObjectKey()
  const plain = Buffer.from('a secret message for a child')
  const up = await store.presign({ method: 'PUT', key, ttlSeconds: 60, householdId: 'h1', contentType: 'audio/ogg', bytes: plain.length })
  const q = new URL(up.url, 'http://x').searchParams
  const params = { householdId: q.get('h')!, contentType: q.get('ct')!, bytes: Number(q.get('len')), expires: Number(q.get('expires')), sig: q.get('sig')! }
  await store.receive(key, params, 'audio/ogg', plain)
  const onDisk = fs.readFileSync(path.join(dir, 'objects', key))
  t.notOk(onDisk.includes(plain), 'no plaintext on disk')
  t.equal(fs.statSync(path.join(dir, 'objects', key)).mode & 0o077, 0, 'private file')
  const keyFile = fs.readFileSync(path.join(dir, 'keys', 'h1.key'))
  t.equal(keyFile.length, 12 + 16 + 32, 'the household key is stored wrapped (GCM), never raw')
  const other = new LocalBlobStore({ dir, masterKey: randomBytes(32) })
  const g = await store.presign({ method: 'GET', key, ttlSeconds: 60, householdId: 'h1' })
  const gq = new URL(g.url, 'http://x').searchParams
  await t.rejects(other.send(key, { householdId: 'h1', contentType: '', bytes: 0, expires: Number(gq.get('expires')), sig: gq.get('sig')! }), 'another master key can neither sign nor unwrap')
})
