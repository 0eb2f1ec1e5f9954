// Events of the recordings context, in `recording-{recordingId}` (docs/EVENTS.md). Every URL
// issuance names who (metadata actor/credential), which recording and until when (R5).

export type RecordingDirection = 'to-device' | 'from-device'

export interface RecordingCreated {
  type: 'RecordingCreated'
  data: {
    recordingId: string
    householdId: string
    deviceId: string
    direction: RecordingDirection
    contentType: string
    bytes: number
    /** random, ≥ 128 bits (R13); never returned by the API */
    objectKey: string
    createdAt: string
  }
}

export interface UploadUrlIssued {
  type: 'UploadUrlIssued'
  data: { recordingId: string; householdId: string; deviceId: string; until: string }
}

export interface DownloadUrlIssued {
  type: 'DownloadUrlIssued'
  /** urlId: names this URL (urlIdOf, service.ts) so that its use can be told from another
   * caller's (R16); events written before it was added have none */
  data: { recordingId: string; householdId: string; deviceId: string; until: string; urlId: string }
}

/** appended only after the object was confirmed to exist with the declared size */
export interface RecordingStored {
  type: 'RecordingStored'
  data: { recordingId: string; householdId: string; deviceId: string; bytes: number; storedAt: string }
}

/** a download URL was used: the embedded store served the object (R5, R16: the breach report
 * lists URLs issued and used). S3 serves its URLs itself, so S3 downloads have no such event. */
export interface RecordingDownloaded {
  type: 'RecordingDownloaded'
  /** urlId: the urlId of the DownloadUrlIssued whose URL was used (absent on older events) */
  data: { recordingId: string; householdId: string; deviceId: string; bytes: number; until: string; urlId: string }
}

export type RecordingEvent = RecordingCreated | UploadUrlIssued | DownloadUrlIssued | RecordingStored | RecordingDownloaded

export const recordingStream = (recordingId: string): string => `recording-${recordingId}`
