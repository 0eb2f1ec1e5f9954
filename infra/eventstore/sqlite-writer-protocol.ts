import type { AppendOptions, StoredLocation } from './port.ts'

// The messages between the embedded event store's main thread (sqlite-writer-client.ts) and its
// writer thread (sqlite-writer.js, which refers to these types in JSDoc).

export type Expected = AppendOptions['expectedRevision'] & {}

export interface WriterData {
  file: string
}

export type WriterRequest =
  | {
      type: 'batch'
      batch: number
      /** per append */
      streams: string[]
      expected: Expected[]
      counts: number[]
      /** per event, flattened: id, type, data (JSON), metadata (JSON) */
      events: string[]
    }
  | { type: 'close' }

/** the outcome of an append that was not simply written */
export type WriterOutcome =
  | { index: number; kind: 'retry'; current: number; stored: Array<StoredLocation | null> }
  | { index: number; kind: 'expected'; current: number }
  | { index: number; kind: 'duplicate' }
  | { index: number; kind: 'error'; message: string; code: string | undefined }

export type WriterReply =
  | {
      type: 'done'
      batch: number
      /** [revision, position] per append; NaN for those listed in outcomes */
      ok: Float64Array
      outcomes: WriterOutcome[]
      written: number
      /** the time recorded in every event of the batch */
      time: string
    }
  | { type: 'failed'; batch: number; message: string; code: string | undefined }
  /** the write connection is open */
  | { type: 'ready' }
