import { randomUUID } from 'node:crypto'
import { KennelError } from '../errors.ts'

// The event store port. Semantics mirror EventStoreDB so that the SQLite, PostgreSQL and
// EventStoreDB adapters behave the same; test/infra/eventstore/contract.ts holds them to it.

/** `any`: no check; `no_stream`: the stream must not exist; `stream_exists`: it must; a number:
 * the revision of the stream's last event (revisions count from 0). */
export type ExpectedRevision = 'any' | 'no_stream' | 'stream_exists' | number

export interface EventMetadata {
  /** who caused the event: `device:<id>`, `account:<id>`, `ops:<name>`, `system:<component>`, `cli:<user>` */
  actor?: string
  correlationId?: string
  causationId?: string
  sourceIp?: string
  [key: string]: unknown
}

export interface NewEvent<Type extends string = string, Data = unknown> {
  /** UUID; makes the append idempotent. Generated when absent. */
  id?: string
  type: Type
  data: Data
  metadata?: EventMetadata
}

/** Recorded events handed to subscriptions may be shared by every subscription of the process:
 * treat them, their data and their metadata as read-only. */
export interface RecordedEvent<Type extends string = string, Data = unknown> {
  id: string
  type: Type
  stream: string
  /** position of the event within its stream, from 0 */
  revision: number
  /** global position over all streams: strictly increasing in commit order, not necessarily dense */
  position: number
  /** ISO 8601 time the store recorded the event */
  time: string
  data: Data
  metadata: EventMetadata
}

export interface AppendOptions {
  expectedRevision?: ExpectedRevision
}

export interface AppendResult {
  /** revision of the last event written (or found, for an idempotent retry) */
  nextExpectedRevision: number
  /** global position of the last event written (or found) */
  position: number
}

export type Direction = 'forwards' | 'backwards'

export interface ReadStreamOptions {
  direction?: Direction
  /** inclusive; default: 0 forwards, the last revision backwards */
  fromRevision?: number
  maxCount?: number
}

export interface ReadAllOptions {
  direction?: Direction
  /** forwards: events with position > after (default: from the start) */
  after?: number
  /** backwards: events with position < before (default: from the end) */
  before?: number
  maxCount?: number
  filter?: EventFilter
}

export interface EventFilter {
  /** stream name prefixes; an event matches when its stream starts with any of them */
  streamPrefixes?: readonly string[]
  /** event types; an event matches when its type is one of them */
  types?: readonly string[]
}

export interface SubscribeOptions {
  /** deliver events with position > after; 0 (default) = from the beginning */
  after?: number
  filter?: EventFilter
  /** awaited before the next event is delivered; a throw stops the subscription with that error */
  onEvent: (event: RecordedEvent) => void | Promise<void>
  /** called once, when the subscription has delivered every event that existed when it caught up */
  onCaughtUp?: () => void
  /** called when every event up to `position` has been delivered or left out by the filter, at
   * least after events the filter left out (a filtered follower can answer "have you seen
   * position n?" without receiving every event) */
  onCheckpoint?: (position: number) => void
  /** called when the subscription stops because of an error: onEvent threw, the store was
   * closed, or (EventStoreDB) the server ended the subscription */
  onError?: (err: Error) => void
  /** called when a read from the store failed and will be retried after `delayMs` from the same
   * position (embedded and PostgreSQL stores: a restarting database does not end a subscription) */
  onRetry?: (err: Error, delayMs: number) => void
}

export interface Subscription {
  /** stop delivering; resolves when no onEvent is running */
  stop(): Promise<void>
  /** resolves when the subscription has stopped, for whatever reason */
  readonly closed: Promise<void>
}

export interface EventStore {
  readonly kind: 'sqlite' | 'postgres' | 'esdb'
  /** the environment recorded in the store when it was created (R8) */
  readonly environment: string
  /** embedded stores only: the database file, for workers that read it with their own connection */
  readonly file?: string
  append(stream: string, events: readonly NewEvent[], options?: AppendOptions): Promise<AppendResult>
  readStream(stream: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>
  readAll(options?: ReadAllOptions): Promise<RecordedEvent[]>
  subscribe(options: SubscribeOptions): Subscription
  /** position of the newest event visible to readers (0 when empty) */
  headPosition(): Promise<number>
  close(): Promise<void>
}

export interface OpenOptions {
  /** environment of the opening process; a store created by another one refuses to open (R8) */
  environment: string
  /** Embedded store: hand every append to this function (another handle of the same file, in
   * this process) instead of starting a writer thread for this handle; the events come back to
   * this handle's subscriptions through its poll of the file. Other adapters ignore it. */
  appendVia?: (stream: string, events: readonly NewEvent[], options: AppendOptions) => Promise<AppendResult>
}

export class WrongExpectedRevisionError extends KennelError {
  readonly stream: string
  readonly expected: ExpectedRevision
  /** revision of the stream's last event, or 'no_stream' */
  readonly actual: number | 'no_stream'

  constructor(stream: string, expected: ExpectedRevision, actual: number | 'no_stream', reason?: string) {
    super(
      'KENNEL_ERR_WRONG_EXPECTED_REVISION',
      `append to ${stream}: expected revision ${expected}, actual ${actual}${reason ? ` (${reason})` : ''}`,
      { stream, expected, actual },
    )
    this.stream = stream
    this.expected = expected
    this.actual = actual
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const STREAM = /^[^\u0000-\u001f\u007f]{1,200}$/
const TYPE = /^[A-Za-z][A-Za-z0-9_.-]{0,99}$/

export interface PreparedEvent {
  id: string
  type: string
  data: unknown
  metadata: EventMetadata
}

/** Validate an append's arguments the same way in every adapter. */
export function prepareAppend(
  stream: string,
  events: readonly NewEvent[],
  expected: ExpectedRevision,
): PreparedEvent[] {
  if (typeof stream !== 'string' || !STREAM.test(stream) || stream.startsWith('$')) {
    throw new KennelError(
      'KENNEL_ERR_VALIDATION',
      `invalid stream name ${JSON.stringify(stream)}: 1-200 characters, no control characters, not starting with $`,
    )
  }
  if (
    !(
      expected === 'any' ||
      expected === 'no_stream' ||
      expected === 'stream_exists' ||
      (Number.isSafeInteger(expected) && expected >= 0)
    )
  ) {
    throw new KennelError('KENNEL_ERR_VALIDATION', `invalid expected revision ${String(expected)}`)
  }
  if (!Array.isArray(events) || events.length === 0) {
    throw new KennelError('KENNEL_ERR_VALIDATION', 'an append needs at least one event')
  }
  // runs for every event appended: no set for a single event, no check of an id made here
  const seen = events.length > 1 ? new Set<string>() : undefined
  const prepared = new Array<PreparedEvent>(events.length)
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!
    let id: string
    if (e.id === undefined) id = randomUUID()
    else {
      if (!UUID.test(e.id))
        throw new KennelError('KENNEL_ERR_VALIDATION', `event id must be a UUID (got ${JSON.stringify(e.id)})`)
      id = e.id.toLowerCase()
    }
    if (seen) {
      if (seen.has(id)) throw new KennelError('KENNEL_ERR_VALIDATION', `event id ${id} appears twice in one append`)
      seen.add(id)
    }
    if (typeof e.type !== 'string' || !TYPE.test(e.type))
      throw new KennelError('KENNEL_ERR_VALIDATION', `invalid event type ${JSON.stringify(e.type)}`)
    if (e.data === undefined) throw new KennelError('KENNEL_ERR_VALIDATION', `event ${e.type} has no data`)
    prepared[i] = { id, type: e.type, data: e.data, metadata: e.metadata ?? NO_METADATA }
  }
  return prepared
}

const NO_METADATA: EventMetadata = Object.freeze({})

/** Check an expected revision against the stream's current last revision (-1 = no stream). */
export function checkExpectedRevision(stream: string, expected: ExpectedRevision, current: number): void {
  const actual = current < 0 ? 'no_stream' : current
  if (expected === 'any') return
  if (expected === 'no_stream' && current < 0) return
  if (expected === 'stream_exists' && current >= 0) return
  if (typeof expected === 'number' && expected === current) return
  throw new WrongExpectedRevisionError(stream, expected, actual)
}

export function matchesFilter(event: { stream: string; type: string }, filter: EventFilter | undefined): boolean {
  if (!filter) return true
  if (filter.types && !filter.types.includes(event.type)) return false
  if (filter.streamPrefixes && !filter.streamPrefixes.some((p) => event.stream.startsWith(p))) return false
  return true
}

export interface StoredLocation {
  stream: string
  revision: number
  position: number
}

/** Decide what an append means when some of its event ids are already stored (idempotency).
 * `stored[i]` is where event i already is, or undefined. Returns undefined when none is stored
 * (a new append), the original result when all are stored as one consecutive run in this stream
 * and the expected revision matches the original append (a retry whose acknowledgement was lost),
 * and throws a conflict otherwise (a partial overlap, or ids reused elsewhere). */
export function classifyRetry(
  stream: string,
  expected: ExpectedRevision,
  stored: readonly (StoredLocation | undefined)[],
  current: number,
): AppendResult | undefined {
  if (stored.every((s) => s === undefined)) return undefined
  const first = stored[0]
  const consecutive =
    first !== undefined &&
    stored.every((s, i) => s !== undefined && s.stream === stream && s.revision === first.revision + i)
  if (!consecutive) {
    throw new KennelError(
      'KENNEL_ERR_DUPLICATE_EVENT',
      `append to ${stream}: some event ids are already stored, others are not, or they are stored elsewhere`,
      { stream },
    )
  }
  const matches =
    expected === 'any' ||
    expected === 'stream_exists' ||
    (expected === 'no_stream' && first.revision === 0) ||
    (typeof expected === 'number' && first.revision === expected + 1)
  if (!matches)
    throw new WrongExpectedRevisionError(
      stream,
      expected,
      current < 0 ? 'no_stream' : current,
      'event ids already stored at another revision',
    )
  const last = stored[stored.length - 1]!
  return { nextExpectedRevision: last.revision, position: last.position }
}
