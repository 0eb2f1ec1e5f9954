import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
// @ts-expect-error s3rver ships no types
import S3rver from 's3rver'
import { revokeCertificate, revokeDevice } from '../../devices/revoke.ts'
import { loadMasterKey } from '../../infra/blobstore/keys.ts'
import { LocalBlobStore } from '../../infra/blobstore/local.ts'
import { S3BlobStore } from '../../infra/blobstore/s3.ts'
import type { ApiDeps } from '../../api/app.ts'
import { bearer, buildTestApi, listenTestApi, request, type TestApi } from './helpers.ts'

// Recordings as attacks from outside (R3, R5): a completed recording replaced through its own
// upload URL, bytes that are not the declared ones, a download URL used after the credential it
// was issued to was revoked, and a Host header that chooses the origin of the URLs handed out.

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')
const pathOf = (url: string): string => new URL(url).pathname + new URL(url).search
const hello = Buffer.from('hello')

async function household(t: Test, deps: Partial<ApiDeps> = {}, env: Record<string, string> = {}) {
  const api = await buildTestApi(t, { deps, env })
  const alice = await api.parent('alice@example.org')
  const toy = await api.pairedToy(alice.token, alice.householdId, 'toy-alice')
  const create = async (body: Record<string, unknown> = {}, headers: Record<string, string> = {}) => {
    const res = await api.app.inject({
      method: 'POST',
      url: `/v1/households/${alice.householdId}/recordings`,
      headers: { ...bearer(alice.token), ...headers },
      payload: { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: hello.length, ...body },
    })
    if (res.statusCode !== 201) throw new Error(`create ${res.statusCode} ${res.body}`)
    return res.json() as { recordingId: string; url: string; headers: Record<string, string> }
  }
  const put = (upload: { url: string; headers: Record<string, string> }, body: Buffer) =>
    api.app.inject({ method: 'PUT', url: pathOf(upload.url), headers: upload.headers, payload: body })
  const complete = (recordingId: string) =>
    api.app.inject({ method: 'POST', url: `/v1/recordings/${recordingId}/complete`, headers: bearer(alice.token) })
  const downloadUrl = (recordingId: string) =>
    api.app.inject({ method: 'GET', url: `/v1/recordings/${recordingId}/download-url`, headers: bearer(alice.token) })
  const events = async (recordingId: string) => api.pki.store.readStream(`recording-${recordingId}`)
  return { api, alice, toy, create, put, complete, downloadUrl, events }
}

const ofType = <T = Record<string, unknown>>(events: Array<{ type: string; data: unknown }>, type: string): T[] =>
  events.filter((e) => e.type === type).map((e) => e.data as T)

t.test('a completed recording cannot be replaced through its upload URL (R5)', async (t) => {
  const { api, create, put, complete, downloadUrl, events } = await household(t)
  const upload = await create()
  t.equal((await put(upload, hello)).statusCode, 204, 'the parent uploads')
  t.equal((await complete(upload.recordingId)).statusCode, 200, 'and completes: the toy is told')
  t.equal(api.notifications.length, 1)

  const swap = await put(upload, Buffer.from('evil!'))
  t.equal(swap.statusCode, 409, 'a second PUT on the same URL, within its lifetime, is refused')
  t.equal(swap.json().error.code, 'KENNEL_ERR_URL_USED')
  const dl = (await downloadUrl(upload.recordingId)).json()
  t.equal(dl.sha256, sha256(hello), 'the download URL comes with the recorded SHA-256')
  const got = await api.app.inject({ method: 'GET', url: pathOf(dl.url) })
  t.equal(got.statusCode, 200)
  t.equal(got.body, 'hello', 'the toy downloads the bytes that were completed, not the new ones')

  const stream = await events(upload.recordingId)
  const issued = ofType<{ urlId: string }>(stream, 'UploadUrlIssued')[0]!
  t.same(
    ofType(stream, 'RecordingUploaded'),
    [
      {
        recordingId: upload.recordingId,
        householdId: (stream[0]!.data as { householdId: string }).householdId,
        deviceId: 'toy-alice',
        bytes: 5,
        sha256: sha256(hello),
        until: (stream[1]!.data as { until: string }).until,
        urlId: issued.urlId,
      },
    ],
    'one upload, evented with its size, SHA-256 and URL',
  )
  t.match(stream.find((e) => e.type === 'RecordingUploaded')!.metadata, { actor: 'anonymous', sourceIp: '127.0.0.1' })
  t.match(
    ofType(stream, 'RecordingStored'),
    [{ bytes: 5, sha256: sha256(hello), urlId: issued.urlId }],
    'completion recorded what the object holds',
  )
  t.match(
    ofType(stream, 'RecordingUrlRefused'),
    [{ method: 'PUT', urlId: issued.urlId, code: 'KENNEL_ERR_URL_USED', reason: 'already-used', attempts: 1 }],
    'the attempted replacement is evented',
  )
})

t.test('completions at once record the recording once and tell the toy once', async (t) => {
  const { api, create, put, complete, events } = await household(t)
  const upload = await create()
  await put(upload, hello)
  const answers = await Promise.all([
    complete(upload.recordingId),
    complete(upload.recordingId),
    complete(upload.recordingId),
  ])
  t.same(
    answers.map((a) => a.statusCode),
    [200, 200, 200],
    'the later ones decide again on the stored recording',
  )
  t.equal(ofType(await events(upload.recordingId), 'RecordingStored').length, 1)
  t.equal(api.notifications.length, 1)
})

t.test('an upload URL writes once, also before the recording is completed', async (t) => {
  const { api, create, put, complete, events } = await household(t)
  const upload = await create()
  t.equal((await put(upload, hello)).statusCode, 204)
  const again = await put(upload, Buffer.from('evil!'))
  t.equal(again.statusCode, 409)
  t.equal(again.json().error.code, 'KENNEL_ERR_URL_USED')
  t.equal((await complete(upload.recordingId)).statusCode, 200)
  t.match(
    ofType(await events(upload.recordingId), 'RecordingStored'),
    [{ sha256: sha256(hello) }],
    'the first upload is the one completed',
  )
  t.match(api.notifications[0]!.payload, { sha256: sha256(hello) })
})

t.test('the upload URL of a completed recording is refused even when its object is gone from the store', async (t) => {
  const { api, create, put, complete, events } = await household(t)
  const upload = await create()
  await put(upload, hello)
  await complete(upload.recordingId)
  // a restore from backup, or an insider, removes the object: the URL must not recreate it
  const { objectKey } = (await events(upload.recordingId))[0]!.data as { objectKey: string }
  for (const f of [objectKey, `${objectKey}.json`]) fs.rmSync(path.join(api.pki.config.dataDir, 'blobs', 'objects', f))
  const again = await put(upload, Buffer.from('evil!'))
  t.equal(again.statusCode, 409)
  t.equal(again.json().error.code, 'KENNEL_ERR_URL_USED')
  t.notOk(fs.existsSync(path.join(api.pki.config.dataDir, 'blobs', 'objects', objectKey)), 'nothing was written')
})

t.test('a declared SHA-256: other bytes are refused at upload, the declared ones accepted', async (t) => {
  const { create, put, complete, events } = await household(t)
  const upload = await create({ sha256: sha256(hello) })
  const wrong = await put(upload, Buffer.from('evil!'))
  t.equal(wrong.statusCode, 409, 'same size, other content')
  t.equal(wrong.json().error.code, 'KENNEL_ERR_RECORDING_HASH_MISMATCH')
  t.equal(
    (await complete(upload.recordingId)).json().error.code,
    'KENNEL_ERR_RECORDING_INCOMPLETE',
    'nothing was stored',
  )
  t.equal((await put(upload, hello)).statusCode, 204, 'the refused attempt did not use the URL up')
  t.equal((await complete(upload.recordingId)).statusCode, 200)
  const stream = await events(upload.recordingId)
  t.match(ofType(stream, 'RecordingCreated'), [{ sha256: sha256(hello) }], 'the declaration is recorded')
  t.match(ofType(stream, 'RecordingUrlRefused'), [
    { method: 'PUT', code: 'KENNEL_ERR_RECORDING_HASH_MISMATCH', reason: 'sha256-mismatch' },
  ])
})

t.test(
  'completion refuses a stored object whose SHA-256 is not the declared one (S3 that does not check checksums)',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-s3rver-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const server = new S3rver({
      port: 0,
      address: '127.0.0.1',
      silent: true,
      directory: dir,
      configureBuckets: [{ name: 'recordings' }],
    })
    const { port } = (await server.run()) as { port: number }
    t.teardown(() => server.close())
    const blobs = new S3BlobStore({
      bucket: 'recordings',
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${port}`,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    })
    t.teardown(() => blobs.close())
    const { api, alice, create, complete, downloadUrl, events } = await household(t, { blobs })
    const upload = await create({ sha256: sha256(hello) })
    t.equal(
      upload.headers['x-amz-checksum-sha256'],
      Buffer.from(sha256(hello), 'hex').toString('base64'),
      'the client is told to send the checksum S3 checks',
    )
    const swapped = await fetch(upload.url, {
      method: 'PUT',
      headers: upload.headers,
      body: new Uint8Array(Buffer.from('evil!')),
    })
    t.equal(swapped.status, 200, 's3rver stores other bytes of the declared size regardless')

    const res = await complete(upload.recordingId)
    t.equal(res.statusCode, 409, 'completion reads the object back and refuses it')
    t.equal(res.json().error.code, 'KENNEL_ERR_RECORDING_HASH_MISMATCH')
    t.same(api.notifications, [], 'the toy is not told')
    const stream = await events(upload.recordingId)
    t.same(ofType(stream, 'RecordingStored'), [], 'nothing is recorded as stored')
    t.same(
      ofType(stream, 'RecordingCompletionRefused'),
      [
        {
          recordingId: upload.recordingId,
          householdId: alice.householdId,
          deviceId: 'toy-alice',
          reason: 'sha256-mismatch',
          bytes: 5,
          sha256: sha256('evil!'),
          declaredBytes: 5,
          declaredSha256: sha256(hello),
        },
      ],
      'the refusal is evented',
    )
    t.equal(
      (await downloadUrl(upload.recordingId)).json().error.code,
      'KENNEL_ERR_RECORDING_INCOMPLETE',
      'and no download URL is issued',
    )
  },
)

t.test('a download is refused when the stored bytes are not the ones recorded at completion', async (t) => {
  const { api, create, put, complete, downloadUrl, events } = await household(t)
  const upload = await create()
  await put(upload, hello)
  await complete(upload.recordingId)
  // an insider with the master key (or a restored backup) replaces the object behind kennel
  const { objectKey, householdId } = (await events(upload.recordingId))[0]!.data as {
    objectKey: string
    householdId: string
  }
  const insider = new LocalBlobStore({
    dir: path.join(api.pki.config.dataDir, 'blobs'),
    masterKey: loadMasterKey(api.pki.config),
  })
  for (const f of [objectKey, `${objectKey}.json`]) fs.rmSync(path.join(api.pki.config.dataDir, 'blobs', 'objects', f))
  const q = new URL(
    (
      await insider.presign({
        method: 'PUT',
        key: objectKey,
        ttlSeconds: 60,
        householdId,
        contentType: 'audio/ogg',
        bytes: 5,
      })
    ).url,
    'http://x',
  ).searchParams
  await insider.receive(
    objectKey,
    {
      householdId: q.get('h')!,
      contentType: 'audio/ogg',
      bytes: 5,
      sha256: '',
      credential: '',
      expires: Number(q.get('expires')),
      sig: q.get('sig')!,
    },
    'audio/ogg',
    Buffer.from('evil!'),
  )

  const got = await api.app.inject({ method: 'GET', url: pathOf((await downloadUrl(upload.recordingId)).json().url) })
  t.equal(got.statusCode, 409, 'the embedded store checks the bytes before it serves them')
  t.equal(got.json().error.code, 'KENNEL_ERR_RECORDING_HASH_MISMATCH')
  t.notOk(got.body.includes('evil!'), 'none of the replaced bytes is sent')
  const stream = await events(upload.recordingId)
  t.same(ofType(stream, 'RecordingDownloaded'), [], 'no download is recorded')
  t.match(
    ofType(stream, 'RecordingUrlRefused'),
    [{ method: 'GET', code: 'KENNEL_ERR_RECORDING_HASH_MISMATCH', reason: 'content-mismatch' }],
    'the refusal is',
  )
})

/** a recording addressed to the toy, completed, and a download URL the toy got over mTLS */
async function toyWithDownloadUrl(t: Test) {
  const world = await household(t)
  const server = await listenTestApi(t, world.api)
  const upload = await world.create()
  await world.put(upload, hello)
  await world.complete(upload.recordingId)
  const asToy = (method: string, p: string) =>
    request(server.port, { method, path: p, ca: server.caPem, key: world.toy.keyPem, cert: world.toy.certPem })
  const issued = await asToy('GET', `/v1/device/recordings/${upload.recordingId}/download-url`)
  t.equal(issued.status, 200, 'the toy gets a download URL')
  const use = () => request(server.port, { method: 'GET', path: pathOf(issued.json().url), ca: server.caPem })
  const caughtUp = async () => world.api.app.readModels.waitFor(await world.api.pki.store.headPosition())
  return { ...world, server, upload, use, caughtUp }
}

async function refusedAfterRevocation(
  t: Test,
  api: TestApi,
  recordingId: string,
  // biome-ignore lint/suspicious/noExplicitAny: tests read fields of the JSON answer they assert on
  use: () => Promise<{ status: number; body: string; json(): any }>,
  reason: string,
) {
  const res = await use()
  t.equal(res.status, 403, 'the URL is refused')
  t.equal(res.json().error.code, 'KENNEL_ERR_URL_REVOKED')
  t.match(res.json().error.message, reason)
  t.notOk(res.body.includes('hello'), 'nothing of the recording is served')
  const stream = await api.pki.store.readStream(`recording-${recordingId}`)
  t.same(ofType(stream, 'RecordingDownloaded'), [], 'no download is recorded')
  t.match(
    ofType(stream, 'RecordingUrlRefused'),
    [{ method: 'GET', code: 'KENNEL_ERR_URL_REVOKED', reason, attempts: 1 }],
    'the refused use is evented',
  )
}

t.test("a download URL issued to a toy does not outlive the toy's revocation (R3)", async (t) => {
  const { api, upload, use, caughtUp } = await toyWithDownloadUrl(t)
  await revokeDevice({ store: api.pki.store, actor: 'cli:test' }, 'toy-alice', 'stolen')
  await caughtUp()
  await refusedAfterRevocation(t, api, upload.recordingId, use, 'device-revoked')
})

t.test("a download URL issued to a toy does not outlive its certificate's revocation (R3)", async (t) => {
  const { api, toy, upload, use, caughtUp } = await toyWithDownloadUrl(t)
  t.equal((await use()).body, 'hello', 'the URL works while the certificate is good')
  await revokeCertificate({ store: api.pki.store, actor: 'cli:test' }, toy.serial, 'key leaked')
  await caughtUp()
  const res = await use()
  t.equal(res.status, 403)
  t.equal(res.json().error.code, 'KENNEL_ERR_URL_REVOKED')
  t.notOk(res.body.includes('hello'))
  const stream = await api.pki.store.readStream(`recording-${upload.recordingId}`)
  t.equal(
    ofType(stream, 'RecordingDownloaded').length,
    1,
    'only the use before the revocation is recorded as a download',
  )
  t.match(ofType(stream, 'RecordingUrlRefused'), [
    { method: 'GET', code: 'KENNEL_ERR_URL_REVOKED', reason: 'certificate-revoked' },
  ])
})

t.test("a parent's URLs do not outlive the session they were issued to", async (t) => {
  const { api, alice, create, put, complete, downloadUrl, events } = await household(t)
  const upload = await create()
  await put(upload, hello)
  await complete(upload.recordingId)
  const dl = (await downloadUrl(upload.recordingId)).json()
  const pending = await create()
  t.equal(
    (await api.app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: bearer(alice.token) })).statusCode,
    204,
    'the parent logs out',
  )
  const got = await api.app.inject({ method: 'GET', url: pathOf(dl.url) })
  t.equal(got.statusCode, 403)
  t.equal(got.json().error.code, 'KENNEL_ERR_URL_REVOKED')
  t.notOk(got.body.includes('hello'))
  const up = await put(pending, hello)
  t.equal(up.statusCode, 403, 'an upload URL of the ended session is refused too')
  t.match(ofType(await events(upload.recordingId), 'RecordingUrlRefused'), [{ method: 'GET', reason: 'session-ended' }])
  t.same(ofType(await events(pending.recordingId), 'RecordingUploaded'), [], 'and nothing was stored')
})

t.test('an upload URL issued to a toy is refused once the toy is revoked', async (t) => {
  const { api, toy } = await household(t)
  const server = await listenTestApi(t, api)
  const created = await request(server.port, {
    method: 'POST',
    path: '/v1/device/recordings',
    ca: server.caPem,
    key: toy.keyPem,
    cert: toy.certPem,
    body: { contentType: 'audio/ogg', bytes: 5 },
  })
  t.equal(created.status, 201)
  await revokeDevice({ store: api.pki.store, actor: 'cli:test' }, 'toy-alice', 'stolen')
  await api.app.readModels.waitFor(await api.pki.store.headPosition())
  const res = await api.app.inject({
    method: 'PUT',
    url: pathOf(created.json().url),
    headers: created.json().headers,
    payload: hello,
  })
  t.equal(res.statusCode, 403)
  t.equal(res.json().error.code, 'KENNEL_ERR_URL_REVOKED')
  const stream = await api.pki.store.readStream(`recording-${created.json().recordingId}`)
  t.same(ofType(stream, 'RecordingUploaded'), [], 'nothing was stored')
  t.match(ofType(stream, 'RecordingUrlRefused'), [{ method: 'PUT', reason: 'device-revoked' }])
})

t.test('the origin of the URLs handed out is the configured one, never the Host header (R13)', async (t) => {
  const { api, alice, create, put, complete, downloadUrl } = await household(
    t,
    {},
    { KENNEL_PUBLIC_URL: 'https://kennel.toys.example:8443' },
  )
  const upload = await create({}, { host: 'evil.example' })
  t.equal(new URL(upload.url).origin, 'https://kennel.toys.example:8443', 'upload URL')
  await put(upload, hello)
  await complete(upload.recordingId)
  const dl = await api.app.inject({
    method: 'GET',
    url: `/v1/recordings/${upload.recordingId}/download-url`,
    headers: { ...bearer(alice.token), host: 'evil.example' },
  })
  t.equal(new URL(dl.json().url).origin, 'https://kennel.toys.example:8443', 'download URL')
  t.notOk(JSON.stringify([upload, dl.json(), (await downloadUrl(upload.recordingId)).json()]).includes('evil.example'))
})

t.test("unset, the origin is the listener's own address and bound port, whatever the Host header", async (t) => {
  const { api, alice } = await household(t)
  const server = await listenTestApi(t, api)
  const res = await request(server.port, {
    method: 'POST',
    path: `/v1/households/${alice.householdId}/recordings`,
    ca: server.caPem,
    body: { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: 5 },
    headers: { ...bearer(alice.token), host: 'evil.example' },
  })
  t.equal(res.status, 201)
  t.equal(new URL(res.json().url).origin, `https://127.0.0.1:${server.port}`)
})
