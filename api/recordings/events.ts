// Events of the recordings context, in `recording-{recordingId}` (docs/EVENTS.md). Every URL
// issuance names who (metadata actor/credential), which recording and until when (R5); every use
// of an embedded-store URL, and every refusal of a genuine one, names the URL by its urlId.

export type RecordingDirection = 'to-device' | 'from-device'

export interface RecordingCreated {
  type: 'RecordingCreated'
  data: {
    recordingId: string
    householdId: string
    deviceId: string
    direction: RecordingDirection
    contentType: string
    /** declared by the client; the upload must have exactly this size */
    bytes: number
    /** the SHA-256 the client declared (lowercase hex), when it declared one */
    sha256?: string
    /** random, ≥ 128 bits (R13); never returned by the API */
    objectKey: string
    createdAt: string
  }
}

/** urlId: names this URL (urlIdOf, service.ts) so that its use can be told from another
 * caller's (R16); events written before it was added have none */
export interface UploadUrlIssued {
  type: 'UploadUrlIssued'
  data: { recordingId: string; householdId: string; deviceId: string; until: string; urlId: string }
}

export interface DownloadUrlIssued {
  type: 'DownloadUrlIssued'
  data: { recordingId: string; householdId: string; deviceId: string; until: string; urlId: string }
}

/** the embedded store stored an upload URL's bytes (appended before the PUT is answered). A URL
 * writes once, so there is at most one per recording. S3 stores uploads itself: none there. */
export interface RecordingUploaded {
  type: 'RecordingUploaded'
  data: {
    recordingId: string
    householdId: string
    deviceId: string
    bytes: number
    sha256: string
    until: string
    urlId: string
  }
}

/** appended only after the stored object was read back with the declared size (and SHA-256, when
 * one was declared): `bytes` and `sha256` are what the object holds, what downloads are checked
 * against; `urlId` is the recording's upload URL (absent on events before it was added) */
export interface RecordingStored {
  type: 'RecordingStored'
  data: {
    recordingId: string
    householdId: string
    deviceId: string
    bytes: number
    sha256: string
    urlId?: string
    storedAt: string
  }
}

/** a completion was refused because the stored object is not what was declared */
export interface RecordingCompletionRefused {
  type: 'RecordingCompletionRefused'
  data: {
    recordingId: string
    householdId: string
    deviceId: string
    reason: 'size-mismatch' | 'sha256-mismatch'
    bytes: number
    sha256: string
    declaredBytes: number
    declaredSha256?: string
  }
}

/** a download URL was used: the embedded store served the object (R5, R16: the breach report
 * lists URLs issued and used). S3 serves its URLs itself, so S3 downloads have no such event. */
export interface RecordingDownloaded {
  type: 'RecordingDownloaded'
  /** urlId: the urlId of the DownloadUrlIssued whose URL was used (absent on older events) */
  data: { recordingId: string; householdId: string; deviceId: string; bytes: number; until: string; urlId: string }
}

/** a genuine (signed, unexpired) embedded-store URL was refused: used again, its credential
 * revoked or its session ended since issuance (R3), content not the declared or recorded one.
 * The first refusal per URL and reason in a minute at once, the rest of that minute as one event
 * with their number in `attempts`. */
export interface RecordingUrlRefused {
  type: 'RecordingUrlRefused'
  data: {
    recordingId: string
    householdId: string
    deviceId: string
    method: 'PUT' | 'GET'
    urlId: string
    until: string
    /** the KENNEL_ERR_ code answered */
    code: string
    reason: string
    attempts: number
  }
}

/** the retention job deleted the recording's object: it was older than KENNEL_RETENTION_RECORDINGS_DAYS (R12) */
export interface RecordingExpired {
  type: 'RecordingExpired'
  data: {
    recordingId: string
    householdId: string
    deviceId: string
    createdAt: string
    expiredAt: string
    retentionDays: number
  }
}

export type RecordingEvent =
  | RecordingCreated
  | UploadUrlIssued
  | DownloadUrlIssued
  | RecordingUploaded
  | RecordingStored
  | RecordingCompletionRefused
  | RecordingDownloaded
  | RecordingUrlRefused
  | RecordingExpired

export const recordingStream = (recordingId: string): string => `recording-${recordingId}`
