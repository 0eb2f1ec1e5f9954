import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Fastify from 'fastify'
import t from 'tap'
import { blobRoutes } from '../../../api/blobs/routes.ts'
import { registerErrorHandling } from '../../../api/plugins/errors.ts'
import { LocalBlobStore, type SignedParams } from '../../../infra/blobstore/local.ts'
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
    setNow: (d) => (now = d),
    async fetch(p, body, extra) {
      const res = await fetch(p.url.startsWith('/') ? base + p.url : p.url, {
        method: p.method,
        headers: { ...p.headers, ...extra },
        ...(body ? { body: new Uint8Array(body) } : {}),
      })
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
  const up = await store.presign({
    method: 'PUT',
    key,
    ttlSeconds: 60,
    householdId: 'h1',
    contentType: 'audio/ogg',
    bytes: plain.length,
  })
  const q = new URL(up.url, 'http://x').searchParams
  const params = {
    householdId: q.get('h')!,
    contentType: q.get('ct')!,
    bytes: Number(q.get('len')),
    sha256: '',
    credential: '',
    expires: Number(q.get('expires')),
    sig: q.get('sig')!,
  }
  await store.receive(key, params, 'audio/ogg', plain)
  const onDisk = fs.readFileSync(path.join(dir, 'objects', key))
  t.notOk(onDisk.includes(plain), 'no plaintext on disk')
  t.equal(fs.statSync(path.join(dir, 'objects', key)).mode & 0o077, 0, 'private file')
  const keyFile = fs.readFileSync(path.join(dir, 'keys', 'h1.key'))
  t.equal(keyFile.length, 12 + 16 + 32, 'the household key is stored wrapped (GCM), never raw')
  const other = new LocalBlobStore({ dir, masterKey: randomBytes(32) })
  const g = await store.presign({ method: 'GET', key, ttlSeconds: 60, householdId: 'h1' })
  const gq = new URL(g.url, 'http://x').searchParams
  await t.rejects(
    other.send(key, {
      householdId: 'h1',
      contentType: '',
      bytes: 0,
      sha256: '',
      credential: '',
      expires: Number(gq.get('expires')),
      sig: gq.get('sig')!,
    }),
    'another master key can neither sign nor unwrap',
  )
})

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** the signed parameters of an embedded-store URL, as the route reads them */
function paramsOf(url: string): SignedParams {
  const q = new URL(url, 'http://x').searchParams
  return {
    householdId: q.get('h')!,
    contentType: q.get('ct')!,
    bytes: Number(q.get('len')),
    sha256: q.get('sha') ?? '',
    credential: q.get('cred') ?? '',
    expires: Number(q.get('expires')),
    sig: q.get('sig')!,
  }
}

t.test('embedded store: of two concurrent PUTs through one URL exactly one stores, and it stays (R5)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-blobs-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = new LocalBlobStore({ dir, masterKey: randomBytes(32) })
  const key = newObjectKey()
  const bodies = [Buffer.from('first bark'), Buffer.from('other bark')]
  const up = paramsOf(
    (
      await store.presign({
        method: 'PUT',
        key,
        ttlSeconds: 60,
        householdId: 'h1',
        contentType: 'audio/ogg',
        bytes: 10,
      })
    ).url,
  )
  const outcomes = await Promise.allSettled(bodies.map((b) => store.receive(key, up, 'audio/ogg', b)))
  const won = outcomes.findIndex((o) => o.status === 'fulfilled')
  t.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1, 'one PUT stores')
  t.match(
    outcomes.find((o) => o.status === 'rejected'),
    { reason: { code: 'KENNEL_ERR_URL_USED' } },
    'the other is refused as a reuse',
  )
  t.same(await store.stat(key), { size: 10, sha256: sha256(bodies[won]!) }, 'the object is the one that won')
  await t.rejects(
    store.receive(key, up, 'audio/ogg', bodies[1 - won]!),
    { code: 'KENNEL_ERR_URL_USED' },
    'and a later PUT is refused too',
  )
  t.same(await store.stat(key), { size: 10, sha256: sha256(bodies[won]!) })
  t.same(fs.readdirSync(path.join(dir, 'objects')).sort(), [key, `${key}.json`], 'no temporary file is left behind')
})

t.test('embedded store: a download is refused when the bytes are not the SHA-256 recorded for them', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-blobs-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = new LocalBlobStore({ dir, masterKey: randomBytes(32) })
  const key = newObjectKey()
  const body = Buffer.from('a bark')
  await store.receive(
    key,
    paramsOf(
      (
        await store.presign({
          method: 'PUT',
          key,
          ttlSeconds: 60,
          householdId: 'h1',
          contentType: 'audio/ogg',
          bytes: body.length,
        })
      ).url,
    ),
    'audio/ogg',
    body,
  )
  const down = paramsOf((await store.presign({ method: 'GET', key, ttlSeconds: 60, householdId: 'h1' })).url)
  t.same((await store.send(key, down, sha256(body))).body, body, 'served when it matches')
  await t.rejects(
    store.send(key, down, sha256(Buffer.from('another bark'))),
    { code: 'KENNEL_ERR_RECORDING_HASH_MISMATCH' },
    'refused when it does not',
  )
})

t.test('embedded store: the declared SHA-256 and the credential are part of the signature', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-blobs-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = new LocalBlobStore({ dir, masterKey: randomBytes(32) })
  const key = newObjectKey()
  const body = Buffer.from('a bark')
  const up = paramsOf(
    (
      await store.presign({
        method: 'PUT',
        key,
        ttlSeconds: 60,
        householdId: 'h1',
        contentType: 'audio/ogg',
        bytes: body.length,
        sha256: sha256(body),
        credential: 'cert:ab12',
      })
    ).url,
  )
  t.same([up.sha256, up.credential], [sha256(body), 'cert:ab12'], 'both travel in the URL')
  for (const [what, p] of [
    ['another SHA-256', { ...up, sha256: sha256(Buffer.from('evil')) }],
    ['no SHA-256', { ...up, sha256: '' }],
    ['another credential', { ...up, credential: 'cert:cd34' }],
    ['no credential', { ...up, credential: '' }],
  ] as const) {
    await t.rejects(
      store.receive(key, p, 'audio/ogg', what === 'no SHA-256' ? Buffer.from('evil!!') : body),
      { code: 'KENNEL_ERR_URL_SIGNATURE' },
      what,
    )
  }
  t.equal(await store.stat(key), undefined, 'nothing was stored')
})

t.test(
  "embedded store: shredding a household's key makes its objects unreadable, other households' stay (R12 crypto-shredding)",
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-blobs-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const store = new LocalBlobStore({ dir, masterKey: randomBytes(32) })
    const body = Buffer.from('OggS-a-lullaby')
    const upload = async (householdId: string) => {
      const key = newObjectKey()
      const up = await store.presign({
        method: 'PUT',
        key,
        ttlSeconds: 60,
        householdId,
        contentType: 'audio/ogg',
        bytes: body.length,
      })
      const q = new URL(up.url, 'http://x').searchParams
      await store.receive(
        key,
        {
          householdId,
          contentType: 'audio/ogg',
          bytes: body.length,
          sha256: '',
          credential: '',
          expires: Number(q.get('expires')),
          sig: q.get('sig')!,
        },
        'audio/ogg',
        body,
      )
      return key
    }
    const erased = await upload('h-erased')
    const kept = await upload('h-kept')
    await store.shredHousehold('h-erased')
    await t.rejects(store.stat(erased), { code: 'KENNEL_ERR_KEY_SHREDDED' }, 'the sealed file no longer opens')
    t.equal((await store.stat(kept))?.size, body.length, "another household's object is untouched")
    await t.rejects(
      upload('h-erased'),
      { code: 'KENNEL_ERR_KEY_SHREDDED' },
      'nothing more is sealed for the erased household: no new key is made',
    )
  },
)
