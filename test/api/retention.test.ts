import path from 'node:path'
import t from 'tap'
import { expireRecordings } from '../../api/recordings/retention.ts'
import { configKeys, loadConfig } from '../../infra/config.ts'
import { loadMasterKey } from '../../infra/blobstore/keys.ts'
import { LocalBlobStore } from '../../infra/blobstore/local.ts'
import { bearer, buildTestApi, STRONG } from './helpers.ts'

// Retention (R12): recordings older than KENNEL_RETENTION_RECORDINGS_DAYS are deleted by the
// projector's job, and the production bucket's lifecycle rule expires them after the same days.

const DAY = 86_400_000

t.test(
  'recordings older than the retention period are deleted and RecordingExpired appended; newer ones stay',
  async (t) => {
    let now = new Date()
    const api = await buildTestApi(t, { env: { KENNEL_RETENTION_RECORDINGS_DAYS: '30' }, deps: { now: () => now } })
    t.equal(api.pki.config.retentionRecordingsDays, 30)
    const alice = await api.parent('alice@example.org')
    await api.pairedToy(alice.token, alice.householdId, 'toy-alice')
    let token = alice.token
    const record = async () => {
      const up = (
        await api.app.inject({
          method: 'POST',
          url: `/v1/households/${alice.householdId}/recordings`,
          headers: bearer(token),
          payload: { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: 5 },
        })
      ).json()
      const u = new URL(up.url)
      await api.app.inject({
        method: 'PUT',
        url: u.pathname + u.search,
        headers: up.headers,
        payload: Buffer.from('hello'),
      })
      await api.app.inject({ method: 'POST', url: `/v1/recordings/${up.recordingId}/complete`, headers: bearer(token) })
      const objectKey = (
        (await api.pki.store.readStream(`recording-${up.recordingId}`))[0]!.data as { objectKey: string }
      ).objectKey
      return { recordingId: up.recordingId as string, objectKey }
    }
    const old = await record()
    now = new Date(now.getTime() + 20 * DAY)
    // sessions last hours: a new login 20 days later
    token = (
      await api.app.inject({
        method: 'POST',
        url: '/v1/sessions',
        payload: { email: 'alice@example.org', password: STRONG },
      })
    ).json().token
    const recent = await record()
    const blobs = new LocalBlobStore({
      dir: path.join(api.pki.config.dataDir, 'blobs'),
      masterKey: loadMasterKey(api.pki.config),
    })
    now = new Date(now.getTime() + 11 * DAY)
    t.equal(await expireRecordingsFrom(api, blobs, now), 1, 'the 31-day-old recording expires')
    t.equal(await blobs.stat(old.objectKey), undefined, 'its object is deleted')
    t.equal((await blobs.stat(recent.objectKey))?.size, 5, 'the 11-day-old one stays')
    const expired = (await api.pki.store.readStream(`recording-${old.recordingId}`)).at(-1)!
    t.match(expired, {
      type: 'RecordingExpired',
      data: { recordingId: old.recordingId, householdId: alice.householdId, retentionDays: 30 },
      metadata: { actor: 'system:retention' },
    })
    await api.app.readModels.waitFor(await api.pki.store.headPosition())
    token = (
      await api.app.inject({
        method: 'POST',
        url: '/v1/sessions',
        payload: { email: 'alice@example.org', password: STRONG },
      })
    ).json().token
    const listed = (
      await api.app.inject({
        method: 'GET',
        url: `/v1/households/${alice.householdId}/recordings`,
        headers: bearer(token),
      })
    )
      .json()
      .recordings.map((r: { recordingId: string }) => r.recordingId)
    t.same(listed, [recent.recordingId], 'the API lists only the kept one')
    t.equal(await expireRecordingsFrom(api, blobs, now), 0, 'a second run finds nothing')
  },
)

// the production bucket's lifecycle default is checked against this one in test/infra/deploy/cdk/context.ts
t.test('recordings are kept 365 days unless KENNEL_RETENTION_RECORDINGS_DAYS says otherwise', async (t) => {
  t.equal(configKeys.retentionRecordingsDays.default, '365')
  t.equal(loadConfig({}).retentionRecordingsDays, 365)
  t.throws(() => loadConfig({ KENNEL_RETENTION_RECORDINGS_DAYS: '0' }), { code: 'KENNEL_ERR_CONFIG' })
})

/** one run of the job over the recordings index the test API follows */
async function expireRecordingsFrom(
  api: Awaited<ReturnType<typeof buildTestApi>>,
  blobs: LocalBlobStore,
  now: Date,
): Promise<number> {
  const { followProjections } = await import('../../projections/follow.ts')
  const { recordingsProjection } = await import('../../api/recordings/projection.ts')
  const followed = followProjections(api.pki.store, [recordingsProjection])
  try {
    await followed.caughtUp
    await followed.waitFor(await api.pki.store.headPosition())
    return await expireRecordings({
      store: api.pki.store,
      docs: followed.docs,
      blobs,
      retentionDays: api.pki.config.retentionRecordingsDays,
      now: () => now,
    })
  } finally {
    await followed.stop()
  }
}
