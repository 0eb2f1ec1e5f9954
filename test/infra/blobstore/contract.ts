import { createHash } from 'node:crypto'
import type { Test } from 'tap'
import { newObjectKey, type BlobStore, type PresignedUrl } from '../../../infra/blobstore/port.ts'

// One contract for every blob-store adapter, run against each: what a presigned URL allows and refuses.

export interface BlobHarness {
  store: BlobStore
  /** send the presigned request (an embedded-store path is resolved against its server) */
  fetch(
    p: PresignedUrl,
    body?: Buffer,
    extraHeaders?: Record<string, string>,
  ): Promise<{ status: number; body: Buffer }>
  /** move the store's clock (URLs are signed at that time) */
  setNow(d: Date): void
  /** why the server does not check a URL's signature (s3rver 3.7, moto), if it does not: those cases are skipped */
  noSignatureChecks?: string
  /** why the server does not check a URL's expiry (moto), if it does not */
  noExpiryChecks?: string
  /** why the server does not honour a conditional write (`If-None-Match: *`), if it does not */
  noConditionalWrites?: string
  /** why the server does not check a declared checksum against the body, if it does not */
  noChecksumChecks?: string
}

const audio = Buffer.from('OggS-the-bark-of-a-small-dog')
const otherAudio = Buffer.from('OggS-the-howl-of-a-large-dog')
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

function skipping(t: Test, reason: string | undefined): boolean {
  if (reason !== undefined) t.ok(true, reason, { skip: reason })
  return reason !== undefined
}

export function blobStoreContract(t: Test, name: string, make: (t: Test) => Promise<BlobHarness>): void {
  const put = (h: BlobHarness, key: string, householdId = 'h1', ttlSeconds = 300) =>
    h.store.presign({ method: 'PUT', key, ttlSeconds, householdId, contentType: 'audio/ogg', bytes: audio.length })
  const get = (h: BlobHarness, key: string, householdId = 'h1', ttlSeconds = 300) =>
    h.store.presign({ method: 'GET', key, ttlSeconds, householdId })

  t.test(`${name}: an object goes up and comes back through presigned URLs`, async (t) => {
    const h = await make(t)
    const key = newObjectKey()
    t.match(key, /^rec-[0-9a-f]{40}$/, '160 random bits')
    t.equal(await h.store.stat(key), undefined, 'nothing before the upload')
    const up = await put(h, key)
    t.equal(up.method, 'PUT')
    t.equal((await h.fetch(up, audio)).status < 300, true, 'upload accepted')
    t.same(
      await h.store.stat(key),
      { size: audio.length, sha256: sha256(audio) },
      'read back: the size and SHA-256 of the bytes stored',
    )
    const down = await h.fetch(await get(h, key))
    t.equal(down.status, 200)
    t.same(down.body, audio)
  })

  t.test(
    `${name}: a deleted object is gone for every URL, and deleting it again is no error (R12 erasure, retention)`,
    async (t) => {
      const h = await make(t)
      const key = newObjectKey()
      await h.fetch(await put(h, key), audio)
      const issuedBefore = await get(h, key)
      await h.store.delete(key)
      t.equal(await h.store.stat(key), undefined, 'stat finds nothing')
      t.not((await h.fetch(issuedBefore)).status, 200, 'a download URL issued before the deletion serves nothing')
      t.not((await h.fetch(await get(h, key))).status, 200, 'nor one issued after')
      await h.store.delete(key)
      await h.store.delete(newObjectKey())
      t.pass('deleting an absent object is no error')
    },
  )

  t.test(`${name}: URLs expire (R5)`, async (t) => {
    const h = await make(t)
    if (skipping(t, h.noExpiryChecks)) return
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
    if (skipping(t, h.noSignatureChecks)) return
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
    t.equal(
      (await h.fetch({ ...url, method: 'PUT', headers: { 'content-type': 'audio/ogg' } }, audio)).status,
      403,
      'a download URL does not upload',
    )
  })

  t.test(`${name}: an upload URL writes once; a second PUT does not replace the object (R5)`, async (t) => {
    const h = await make(t)
    if (skipping(t, h.noConditionalWrites)) return
    const key = newObjectKey()
    const up = await put(h, key)
    t.ok((await h.fetch(up, audio)).status < 300, 'the first PUT stores')
    const again = await h.fetch(up, otherAudio)
    t.ok(
      again.status === 409 || again.status === 412,
      `the second PUT through the same URL is refused (${again.status})`,
    )
    t.same(
      await h.store.stat(key),
      { size: audio.length, sha256: sha256(audio) },
      'the object is still the first upload',
    )
    t.same((await h.fetch(await get(h, key))).body, audio, 'and that is what a download returns')
  })

  t.test(`${name}: a declared SHA-256 is bound to the upload`, async (t) => {
    const h = await make(t)
    if (skipping(t, h.noChecksumChecks)) return
    const key = newObjectKey()
    const up = await h.store.presign({
      method: 'PUT',
      key,
      ttlSeconds: 300,
      householdId: 'h1',
      contentType: 'audio/ogg',
      bytes: audio.length,
      sha256: sha256(audio),
    })
    const wrong = await h.fetch(up, otherAudio)
    t.ok(wrong.status >= 400 && wrong.status < 500, `other bytes of the same size are refused (${wrong.status})`)
    t.equal(await h.store.stat(key), undefined, 'and nothing is stored')
    t.ok((await h.fetch(up, audio)).status < 300, 'the declared bytes are accepted through the same URL')
    t.same(await h.store.stat(key), { size: audio.length, sha256: sha256(audio) })
  })
}
