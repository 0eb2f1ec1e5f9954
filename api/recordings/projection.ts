import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import type { Documents, DocumentTx, Projection } from '../../projections/projection.ts'
import type { AccountErased } from '../accounts/events.ts'
import type {
  RecordingCreated,
  RecordingDirection,
  RecordingExpired,
  RecordingStored,
  UploadUrlIssued,
} from './events.ts'

// The recordings index: one document per recording, listed by household and by toy.

export interface RecordingDoc {
  recordingId: string
  householdId: string
  deviceId: string
  direction: RecordingDirection
  contentType: string
  /** declared at creation; once stored, what the object holds (the same, or completion refused) */
  bytes: number
  /** the SHA-256 the client declared at creation, if any */
  declaredSha256: string | undefined
  /** the SHA-256 of the stored content, recorded at completion: downloads are checked against it */
  sha256: string | undefined
  objectKey: string
  /** the urlId of the recording's upload URL */
  uploadUrlId: string | undefined
  status: 'pending' | 'stored'
  createdAt: string
  storedAt: string | undefined
}

const RECORDINGS = 'api.recordings'
const BY_HOUSEHOLD = 'api.recordingsByHousehold'
const BY_DEVICE = 'api.recordingsByDevice'
const BY_OBJECT_KEY = 'api.recordingByObjectKey'

export const recordingsProjection: Projection = {
  name: 'api-recordings',
  version: 5,
  // completion decides on the recording's stream (recording.ts), not on this document: the events
  // that change nothing here (URL uses and refusals, downloads) are not followed
  eventTypes: ['RecordingCreated', 'UploadUrlIssued', 'RecordingStored', 'RecordingExpired', 'AccountErased'],
  apply(tx: DocumentTx, recorded: RecordedEvent) {
    const event = { type: recorded.type, data: recorded.data } as
      | RecordingCreated
      | UploadUrlIssued
      | RecordingStored
      | RecordingExpired
      | AccountErased
    switch (event.type) {
      case 'RecordingCreated': {
        const d = event.data
        const doc: RecordingDoc = {
          recordingId: d.recordingId,
          householdId: d.householdId,
          deviceId: d.deviceId,
          direction: d.direction,
          contentType: d.contentType,
          bytes: d.bytes,
          declaredSha256: d.sha256,
          sha256: undefined,
          objectKey: d.objectKey,
          uploadUrlId: undefined,
          status: 'pending',
          createdAt: d.createdAt,
          storedAt: undefined,
        }
        tx.put(RECORDINGS, d.recordingId, doc)
        tx.put(BY_HOUSEHOLD, d.householdId, [...(tx.get<string[]>(BY_HOUSEHOLD, d.householdId) ?? []), d.recordingId])
        tx.put(BY_DEVICE, d.deviceId, [...(tx.get<string[]>(BY_DEVICE, d.deviceId) ?? []), d.recordingId])
        tx.put(BY_OBJECT_KEY, d.objectKey, d.recordingId)
        return
      }
      case 'RecordingStored': {
        const r = tx.get<RecordingDoc>(RECORDINGS, event.data.recordingId)
        if (r)
          tx.put(RECORDINGS, r.recordingId, {
            ...r,
            status: 'stored',
            bytes: event.data.bytes,
            sha256: event.data.sha256,
            storedAt: event.data.storedAt,
          })
        return
      }
      case 'UploadUrlIssued': {
        const r = tx.get<RecordingDoc>(RECORDINGS, event.data.recordingId)
        if (r) tx.put(RECORDINGS, r.recordingId, { ...r, uploadUrlId: event.data.urlId })
        return
      }
      case 'AccountErased':
        for (const id of event.data.recordingIds) forget(tx, id)
        return
      case 'RecordingExpired':
        forget(tx, event.data.recordingId)
        return
      default: {
        const _: never = event
        return _
      }
    }
  },
}

/** a recording whose object was deleted (erasure, retention) leaves the index */
function forget(tx: DocumentTx, recordingId: string): void {
  const r = tx.get<RecordingDoc>(RECORDINGS, recordingId)
  if (!r) return
  const without = (collection: string, id: string) => {
    const ids = (tx.get<string[]>(collection, id) ?? []).filter((x) => x !== recordingId)
    if (ids.length > 0) tx.put(collection, id, ids)
    else tx.delete(collection, id)
  }
  without(BY_HOUSEHOLD, r.householdId)
  without(BY_DEVICE, r.deviceId)
  tx.delete(BY_OBJECT_KEY, r.objectKey)
  tx.delete(RECORDINGS, recordingId)
}

/** every recording in the index (the retention job's scan) */
export const allRecordings = (docs: Documents): Iterable<RecordingDoc> => docs.values<RecordingDoc>(RECORDINGS)

export const recordingById = (docs: Documents, recordingId: string): RecordingDoc | undefined =>
  docs.get<RecordingDoc>(RECORDINGS, recordingId)

export function recordingByObjectKey(docs: Documents, objectKey: string): RecordingDoc | undefined {
  const id = docs.get<string>(BY_OBJECT_KEY, objectKey)
  return id === undefined ? undefined : recordingById(docs, id)
}

const byIds = (docs: Documents, ids: string[] | undefined): RecordingDoc[] =>
  (ids ?? []).map((id) => recordingById(docs, id)).filter((r): r is RecordingDoc => r !== undefined)

export const recordingsOfHousehold = (docs: Documents, householdId: string): RecordingDoc[] =>
  byIds(docs, docs.get<string[]>(BY_HOUSEHOLD, householdId))
export const recordingsOfDevice = (docs: Documents, deviceId: string): RecordingDoc[] =>
  byIds(docs, docs.get<string[]>(BY_DEVICE, deviceId))

/** what the API shows of a recording (never the object key) */
export function recordingView(r: RecordingDoc) {
  return {
    recordingId: r.recordingId,
    householdId: r.householdId,
    deviceId: r.deviceId,
    direction: r.direction,
    contentType: r.contentType,
    bytes: r.bytes,
    sha256: r.sha256,
    status: r.status,
    createdAt: r.createdAt,
    storedAt: r.storedAt,
  }
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
    sha256: { type: 'string', description: 'SHA-256 of the stored content (lowercase hex), once stored' },
    status: { type: 'string' },
    createdAt: { type: 'string' },
    storedAt: { type: 'string' },
  },
} as const
