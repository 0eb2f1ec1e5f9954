import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import type { Documents, DocumentTx, Projection } from '../../projections/projection.ts'
import type { RecordingDirection, RecordingEvent } from './events.ts'

// The recordings index: one document per recording, listed by household and by toy.

export interface RecordingDoc {
  recordingId: string
  householdId: string
  deviceId: string
  direction: RecordingDirection
  contentType: string
  bytes: number
  objectKey: string
  status: 'pending' | 'stored'
  createdAt: string
  storedAt: string | undefined
  /** revision of the recording's stream, for appends with an expected revision */
  revision: number
}

const RECORDINGS = 'api.recordings'
const BY_HOUSEHOLD = 'api.recordingsByHousehold'
const BY_DEVICE = 'api.recordingsByDevice'
const BY_OBJECT_KEY = 'api.recordingByObjectKey'

export const recordingsProjection: Projection = {
  name: 'api-recordings',
  version: 2,
  eventTypes: ['RecordingCreated', 'UploadUrlIssued', 'DownloadUrlIssued', 'RecordingStored', 'RecordingDownloaded'],
  apply(tx: DocumentTx, recorded: RecordedEvent) {
    const event = { type: recorded.type, data: recorded.data } as RecordingEvent
    switch (event.type) {
      case 'RecordingCreated': {
        const d = event.data
        tx.put(RECORDINGS, d.recordingId, { ...d, status: 'pending', storedAt: undefined, revision: recorded.revision } satisfies RecordingDoc)
        tx.put(BY_HOUSEHOLD, d.householdId, [...(tx.get<string[]>(BY_HOUSEHOLD, d.householdId) ?? []), d.recordingId])
        tx.put(BY_DEVICE, d.deviceId, [...(tx.get<string[]>(BY_DEVICE, d.deviceId) ?? []), d.recordingId])
        tx.put(BY_OBJECT_KEY, d.objectKey, d.recordingId)
        return
      }
      case 'RecordingStored': {
        const r = tx.get<RecordingDoc>(RECORDINGS, event.data.recordingId)
        if (r) tx.put(RECORDINGS, r.recordingId, { ...r, status: 'stored', storedAt: event.data.storedAt, revision: recorded.revision })
        return
      }
      case 'UploadUrlIssued':
      case 'DownloadUrlIssued':
      case 'RecordingDownloaded': {
        const r = tx.get<RecordingDoc>(RECORDINGS, event.data.recordingId)
        if (r) tx.put(RECORDINGS, r.recordingId, { ...r, revision: recorded.revision })
        return
      }
      default: {
        const _: never = event
        return _
      }
    }
  },
}

export const recordingById = (docs: Documents, recordingId: string): RecordingDoc | undefined => docs.get<RecordingDoc>(RECORDINGS, recordingId)

export function recordingByObjectKey(docs: Documents, objectKey: string): RecordingDoc | undefined {
  const id = docs.get<string>(BY_OBJECT_KEY, objectKey)
  return id === undefined ? undefined : recordingById(docs, id)
}

const byIds = (docs: Documents, ids: string[] | undefined): RecordingDoc[] => (ids ?? []).map((id) => recordingById(docs, id)).filter((r): r is RecordingDoc => r !== undefined)

export const recordingsOfHousehold = (docs: Documents, householdId: string): RecordingDoc[] => byIds(docs, docs.get<string[]>(BY_HOUSEHOLD, householdId))
export const recordingsOfDevice = (docs: Documents, deviceId: string): RecordingDoc[] => byIds(docs, docs.get<string[]>(BY_DEVICE, deviceId))

/** what the API shows of a recording (never the object key) */
export function recordingView(r: RecordingDoc) {
  return { recordingId: r.recordingId, householdId: r.householdId, deviceId: r.deviceId, direction: r.direction, contentType: r.contentType, bytes: r.bytes, status: r.status, createdAt: r.createdAt, storedAt: r.storedAt }
}

export const recordingViewSchema = {
  type: 'object',
  properties: {
    recordingId: { type: 'string' },
    householdId: { type: 'string' },
    deviceId: { type: 'string' },
    direction: { type: 'string' },
    contentType: { type: 'string' },
    bytes: { type: 'integer' },
    status: { type: 'string' },
    createdAt: { type: 'string' },
    storedAt: { type: 'string' },
  },
} as const
