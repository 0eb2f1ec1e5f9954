import { isKennelError } from '../errors.ts'
import type { AppendResult, EventMetadata, EventStore, ExpectedRevision, NewEvent } from './port.ts'

// The one way a command is handled, in every context (as Emmett's `CommandHandler`): read the
// stream, fold it with the context's `evolve`, decide, append the new events with the revision
// that was read. A concurrent append to the same stream (KENNEL_ERR_WRONG_EXPECTED_REVISION)
// makes it read and decide again, so the second of two revocations becomes "already revoked"
// instead of a second event; after `attempts` tries the conflict reaches the caller.

export interface DomainEvent {
  type: string
  data: unknown
}

/** A context's decisions on one stream, pure: time, ids and the results of slow or secret checks
 * come in with the command, so decide/evolve are tested as given/when/then. */
export interface Decider<Command, State, Event extends DomainEvent> {
  initialState: State
  evolve(state: State, event: Event): State
  decide(command: Command, state: State): Event[]
}

export type Fold<State, Event extends DomainEvent> = Pick<Decider<unknown, State, Event>, 'initialState' | 'evolve'>

export interface LoadedStream<State> {
  state: State
  /** revision of the stream's last event, -1 when there is none */
  revision: number
}

/** an append the caller chooses (the API's waits until its read models have the events) */
export type Append = (
  stream: string,
  events: readonly NewEvent[],
  expectedRevision: ExpectedRevision,
) => Promise<AppendResult>

export interface HandleOptions<Event extends DomainEvent> {
  /** recorded with every new event; a function to give events of one command different actors */
  metadata?: EventMetadata | ((event: Event) => EventMetadata)
  /** default: the store's own append */
  append?: Append
  /** tries in all, the first included (default 3) */
  attempts?: number
}

export interface Handled<State, Event extends DomainEvent> {
  /** the state after the new events */
  state: State
  /** what was appended; none when the decision added nothing */
  events: Event[]
  /** revision of the stream's last event after the append, -1 when there is none */
  revision: number
  /** global position of the last event appended, undefined when nothing was */
  position: number | undefined
}

export const DEFAULT_ATTEMPTS = 3

export async function loadStream<State, Event extends DomainEvent>(
  store: Pick<EventStore, 'readStream'>,
  stream: string,
  fold: Fold<State, Event>,
): Promise<LoadedStream<State>> {
  const recorded = await store.readStream(stream)
  let state = fold.initialState
  for (const e of recorded) state = fold.evolve(state, { type: e.type, data: e.data } as Event)
  return { state, revision: recorded.at(-1)?.revision ?? -1 }
}

/** `handle` decides on the folded state: usually `(state) => decider.decide(command, state)`,
 * async when the command needs work that depends on the state (signing a certificate, asking the
 * blob store); it runs again on each retry, so it must not have effects that cannot be repeated. */
export async function handleCommand<State, Event extends DomainEvent>(
  store: Pick<EventStore, 'readStream' | 'append'>,
  stream: string,
  fold: Fold<State, Event>,
  handle: (state: State, revision: number) => Event[] | Promise<Event[]>,
  options: HandleOptions<Event> = {},
): Promise<Handled<State, Event>> {
  const attempts = options.attempts ?? DEFAULT_ATTEMPTS
  const append: Append =
    options.append ?? ((s, events, expectedRevision) => store.append(s, events, { expectedRevision }))
  for (let attempt = 1; ; attempt++) {
    const { state, revision } = await loadStream(store, stream, fold)
    const events = await handle(state, revision)
    if (events.length === 0) return { state, events, revision, position: undefined }
    const { metadata } = options
    const recorded = events.map((e) => ({
      type: e.type,
      data: e.data,
      ...(metadata === undefined ? {} : { metadata: typeof metadata === 'function' ? metadata(e) : metadata }),
    }))
    try {
      const result = await append(stream, recorded, revision < 0 ? 'no_stream' : revision)
      return {
        state: events.reduce(fold.evolve, state),
        events,
        revision: result.nextExpectedRevision,
        position: result.position,
      }
    } catch (err) {
      if (attempt >= attempts || !isKennelError(err, 'KENNEL_ERR_WRONG_EXPECTED_REVISION')) throw err
    }
  }
}
