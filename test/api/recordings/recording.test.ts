import t from 'tap'
import type { RecordingEvent } from '../../../api/recordings/events.ts'
import { recordingDecider, type RecordingCommand } from '../../../api/recordings/recording.ts'
import { given } from '../../helpers/decider.ts'

// The recording's decisions (creation with its upload URL, completion against what the blob store
// holds) as given/when/then: pure, no store.

const t0 = new Date('2030-01-01T00:00:00Z')
const later = new Date(t0.getTime() + 60_000)
const ids = { recordingId: 'r1', householdId: 'h1', deviceId: 'toy-1' }
const sha = (c: string) => c.repeat(64)
const create = (sha256?: string): RecordingCommand => ({
  type: 'CreateRecording',
  ...ids,
  direction: 'to-device',
  contentType: 'audio/ogg',
  bytes: 5,
  sha256,
  objectKey: 'key-1',
  now: t0,
  upload: { until: later.toISOString(), urlId: 'u1' },
})
const created = (sha256?: string): RecordingEvent[] => [
  {
    type: 'RecordingCreated',
    data: {
      ...ids,
      direction: 'to-device',
      contentType: 'audio/ogg',
      bytes: 5,
      ...(sha256 ? { sha256 } : {}),
      objectKey: 'key-1',
      createdAt: t0.toISOString(),
    },
  },
  { type: 'UploadUrlIssued', data: { ...ids, until: later.toISOString(), urlId: 'u1' } },
]
const complete = (object?: { size: number; sha256: string }): RecordingCommand => ({
  type: 'CompleteRecording',
  object,
  now: later,
})
const stored: RecordingEvent = {
  type: 'RecordingStored',
  data: { ...ids, bytes: 5, sha256: sha('a'), urlId: 'u1', storedAt: later.toISOString() },
}

t.test('a recording is created once, with the SHA-256 declared or without one, and its upload URL', async (t) => {
  given(recordingDecider, []).when(create()).then(t, created())
  given(recordingDecider, [])
    .when(create(sha('a')))
    .then(t, created(sha('a')))
  given(recordingDecider, created()).when(create()).refused(t, 'KENNEL_ERR_WRONG_EXPECTED_REVISION')
})

t.test('completion records what the object holds, once, naming the upload URL', async (t) => {
  given(recordingDecider, created())
    .when(complete({ size: 5, sha256: sha('a') }))
    .then(t, [stored])
  given(recordingDecider, created(sha('a')))
    .when(complete({ size: 5, sha256: sha('a') }))
    .then(t, [stored])
  given(recordingDecider, [...created(), stored])
    .when(complete({ size: 5, sha256: sha('a') }))
    .then(t, [])
  const { urlId: _, ...withoutUrl } = stored.data
  given(recordingDecider, [created()[0]!])
    .when(complete({ size: 5, sha256: sha('a') }))
    .then(t, [{ type: 'RecordingStored', data: withoutUrl }])
})

t.test(
  'completion is refused before the upload, for an unknown or expired recording, and for an object that is not the one declared',
  async (t) => {
    given(recordingDecider, created()).when(complete()).refused(t, 'KENNEL_ERR_RECORDING_INCOMPLETE')
    given(recordingDecider, [])
      .when(complete({ size: 5, sha256: sha('a') }))
      .refused(t, 'KENNEL_ERR_NOT_FOUND')
    const expired: RecordingEvent = {
      type: 'RecordingExpired',
      data: { ...ids, createdAt: t0.toISOString(), expiredAt: later.toISOString(), retentionDays: 30 },
    }
    given(recordingDecider, [...created(), expired])
      .when(complete({ size: 5, sha256: sha('a') }))
      .refused(t, 'KENNEL_ERR_NOT_FOUND')
    given(recordingDecider, created())
      .when(complete({ size: 6, sha256: sha('a') }))
      .refused(t, 'KENNEL_ERR_RECORDING_SIZE_MISMATCH')
    given(recordingDecider, created(sha('a')))
      .when(complete({ size: 5, sha256: sha('b') }))
      .refused(t, 'KENNEL_ERR_RECORDING_HASH_MISMATCH')
  },
)

t.test('a refused completion carries the event that records it', async (t) => {
  const state = created(sha('a')).reduce(recordingDecider.evolve, recordingDecider.initialState)
  const refusal = t.throws(() =>
    recordingDecider.decide(complete({ size: 6, sha256: sha('b') }), state),
  ) as unknown as { event: RecordingEvent }
  t.same(refusal.event, {
    type: 'RecordingCompletionRefused',
    data: { ...ids, reason: 'size-mismatch', bytes: 6, sha256: sha('b'), declaredBytes: 5, declaredSha256: sha('a') },
  })
})
