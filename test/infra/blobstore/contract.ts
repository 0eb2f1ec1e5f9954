import type { Test } from 'tap'
import { newObjectKey, type BlobStore, type PresignedUrl } from '../../../infra/blobstore/port.ts'

// One contract for every blob-store adapter (STYLE §8): what a presigned URL allows and refuses.

export interface BlobHarness {
  store: BlobStore
  /** send the presigned request (an embedded-store path is resolved against its server) */
  fetch(p: PresignedUrl, body?: Buffer, extraHeaders?: Record<string, string>): Promise<{ status: number; body: Buffer }>
  /** move the store's clock (URLs are signed at that time) */
  setNow(d: Date): void
  /** false for a server that cannot check SigV4 signatures (s3rver 3.7): those cases are skipped with a reason */
  verifiesSignatures: boolean
}

const audio = Buffer.from('OggS-the-bark-of-a-small-dog')

export function blobStoreContract(t: Test, name: string, make: (t: Test) => Promise<BlobHarness>): void {
  const put = (h: BlobHarness, key: string, householdId = 'h1', ttlSeconds = 300) => h.store.presign({ method: 'PUT', key, ttlSeconds, householdId, contentType: 'audio/ogg', bytes: audio.length })
  const get = (h: BlobHarness, key: string, householdId = 'h1', ttlSeconds = 300) => h.store.presign({ method: 'GET', key, ttlSeconds, householdId })

  t.test(`${name}: an object goes up and comes back through presigned URLs`, async (t) => {
    const h = await make(t)
    const key = newObjectKey()
    t.match(key, /^rec-[0-9a-f]{40}$/, '160 random bits')
    t.equal(await h.store.stat(key), undefined, 'nothing before the upload')
    const up = await put(h, key)
    t.equal(up.method, 'PUT')
    t.equal((await h.fetch(up, audio)).status < 300, true, 'upload accepted')
    t.same(await h.store.stat(key), { size: audio.length })
    const down = await h.fetch(await get(h, key))
    t.equal(down.status, 200)
    t.same(down.body, audio)
  })

  t.test(`${name}: URLs expire (R5)`, async (t) => {
    const h = await make(t)
    const key = newObjectKey()
    await h.fetch(await put(h, key), audio)
    h.setNow(new Date(Date.now() - 3600_000))
    const old = await get(h, key, 'h1', 300)
    const oldPut = await put(h, newObjectKey())
    h.setNow(new Date())
    const res = await h.fetch(old)
    t.equal(res.status, 403, 'an expired download URL is refused')
    t.notOk(res.body.includes(audio), 'and returns none of the object')
    t.equal((await h.fetch(oldPut, audio)).status, 403, 'an expired upload URL is refused')
  })

  t.test(`${name}: a URL is bound to its object and its signature`, async (t) => {
    const h = await make(t)
    if (!h.verifiesSignatures) {
      const reason = 'this server does not verify SigV4 signatures (s3rver 3.7: "Signature version 4 calculation is unimplemented")'
      t.ok(true, reason, { skip: reason })
      return
    }
    const key = newObjectKey()
    const other = newObjectKey()
    await h.fetch(await put(h, key), audio)
    await h.fetch(await put(h, other), audio)
    const url = await get(h, key)
    const swapped = { ...url, url: url.url.replace(key, other) }
    t.equal((await h.fetch(swapped)).status, 403, 'the URL of one object does not open another')
    const sig = /([?&](?:sig|X-Amz-Signature)=)([^&])/.exec(url.url)!
    const tampered = { ...url, url: url.url.replace(sig[0], `${sig[1]}${sig[2] === '0' ? '1' : '0'}`) }
    t.equal((await h.fetch(tampered)).status, 403, 'a tampered signature is refused')
    t.equal((await h.fetch({ ...url, method: 'PUT', headers: { 'content-type': 'audio/ogg' } }, audio)).status, 403, 'a download URL does not upload')
  })
}
