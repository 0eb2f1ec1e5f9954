import { KennelError } from '../../infra/errors.ts'
import type { Decider } from '../../infra/eventstore/command.ts'
import type { RecordingCompletionRefused, RecordingDirection, RecordingEvent, RecordingStored } from './events.ts'

// The recording (stream `recording-{recordingId}`): pure decide/evolve, handled by the one command
// handler (infra/eventstore/command.ts). What the blob store says (the presigned URL, the stored
// object's size and SHA-256) comes in with the command. Not decided here: who may touch the
// recording (the routes, on the households and devices read models), and download URLs
// (service.ts): a stored recording stays downloadable, and every download adds an event to the
// stream, so they are checked on the read model and appended without an expected revision.

export interface RecordingState {
  status: 'new' | 'pending' | 'stored' | 'expired'
  recordingId: string | undefined
  householdId: string
  deviceId: string
  direction: RecordingDirection
  contentType: string
  /** declared at creation */
  bytes: number
  declaredSha256: string | undefined
  objectKey: string
  uploadUrlId: string | undefined
}

export const initialRecordingState: RecordingState = {
  status: 'new',
  recordingId: undefined,
  householdId: '',
  deviceId: '',
  direction: 'to-device',
  contentType: '',
  bytes: 0,
  declaredSha256: undefined,
  objectKey: '',
  uploadUrlId: undefined,
}

export type RecordingCommand =
  | {
      type: 'CreateRecording'
      recordingId: string
      householdId: string
      deviceId: string
      direction: RecordingDirection
      contentType: string
      bytes: number
      sha256?: string | undefined
      objectKey: string
      now: Date
      /** the upload URL presigned for it: until when, and its urlId */
      upload: { until: string; urlId: string }
    }
  /** `object`: what the blob store holds under the recording's key, undefined when nothing */
  | { type: 'CompleteRecording'; object: { size: number; sha256: string } | undefined; now: Date }

/** Thrown by decide when the stored object is not what was declared; the caller records its
 * event (R19), which must not wait for the stream's revision, then answers with the error. */
export class CompletionRefused extends KennelError {
  readonly event: RecordingCompletionRefused
  constructor(event: RecordingCompletionRefused, err: KennelError) {
    super(err.code, err.message)
    this.event = event
  }
}

export function decide(command: RecordingCommand, state: RecordingState): RecordingEvent[] {
  switch (command.type) {
    case 'CreateRecording': {
      // the id is new and random: an existing stream is a conflict, as an append with no_stream
      if (state.status !== 'new')
        throw new KennelError('KENNEL_ERR_WRONG_EXPECTED_REVISION', `recording ${command.recordingId} already exists`)
      const { recordingId, householdId, deviceId, direction, contentType, bytes, objectKey } = command
      const declared = command.sha256 === undefined ? {} : { sha256: command.sha256 }
      return [
        {
          type: 'RecordingCreated',
          data: {
            recordingId,
            householdId,
            deviceId,
            direction,
            contentType,
            bytes,
            ...declared,
            objectKey,
            createdAt: command.now.toISOString(),
          },
        },
        {
          type: 'UploadUrlIssued',
          data: { recordingId, householdId, deviceId, until: command.upload.until, urlId: command.upload.urlId },
        },
      ]
    }
    case 'CompleteRecording': {
      if (state.status === 'new' || state.status === 'expired')
        throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such recording')
      if (state.status === 'stored') return []
      const stat = command.object
      if (!stat) throw new KennelError('KENNEL_ERR_RECORDING_INCOMPLETE', 'the recording has not been uploaded yet')
      if (stat.size !== state.bytes)
        throw refusal(
          state,
          stat,
          'size-mismatch',
          new KennelError(
            'KENNEL_ERR_RECORDING_SIZE_MISMATCH',
            `the uploaded object has ${stat.size} bytes, ${state.bytes} were declared`,
          ),
        )
      if (state.declaredSha256 !== undefined && stat.sha256 !== state.declaredSha256)
        throw refusal(
          state,
          stat,
          'sha256-mismatch',
          new KennelError(
            'KENNEL_ERR_RECORDING_HASH_MISMATCH',
            `the uploaded object's SHA-256 is ${stat.sha256}, ${state.declaredSha256} was declared`,
          ),
        )
      const stored: RecordingStored = {
        type: 'RecordingStored',
        data: {
          recordingId: state.recordingId!,
          householdId: state.householdId,
          deviceId: state.deviceId,
          bytes: stat.size,
          sha256: stat.sha256,
          ...(state.uploadUrlId ? { urlId: state.uploadUrlId } : {}),
          storedAt: command.now.toISOString(),
        },
      }
      return [stored]
    }
    default: {
      const _: never = command
      return _
    }
  }
}

function refusal(
  state: RecordingState,
  stat: { size: number; sha256: string },
  reason: RecordingCompletionRefused['data']['reason'],
  err: KennelError,
): CompletionRefused {
  const event: RecordingCompletionRefused = {
    type: 'RecordingCompletionRefused',
    data: {
      recordingId: state.recordingId!,
      householdId: state.householdId,
      deviceId: state.deviceId,
      reason,
      bytes: stat.size,
      sha256: stat.sha256,
      declaredBytes: state.bytes,
      ...(state.declaredSha256 ? { declaredSha256: state.declaredSha256 } : {}),
    },
  }
  return new CompletionRefused(event, err)
}

export function evolve(state: RecordingState, event: RecordingEvent): RecordingState {
  switch (event.type) {
    case 'RecordingCreated': {
      const d = event.data
      return {
        status: 'pending',
        recordingId: d.recordingId,
        householdId: d.householdId,
        deviceId: d.deviceId,
        direction: d.direction,
        contentType: d.contentType,
        bytes: d.bytes,
        declaredSha256: d.sha256,
        objectKey: d.objectKey,
        uploadUrlId: undefined,
      }
    }
    case 'UploadUrlIssued':
      return { ...state, uploadUrlId: event.data.urlId }
    case 'RecordingStored':
      return { ...state, status: 'stored' }
    case 'RecordingExpired':
      return { ...state, status: 'expired' }
    case 'DownloadUrlIssued':
    case 'RecordingUploaded':
    case 'RecordingCompletionRefused':
    case 'RecordingDownloaded':
    case 'RecordingUrlRefused':
      return state
    default: {
      const _: never = event
      return _
    }
  }
}

export const recordingDecider: Decider<RecordingCommand, RecordingState, RecordingEvent> = {
  initialState: initialRecordingState,
  evolve,
  decide,
}
