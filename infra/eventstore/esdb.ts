import {
  type AllStreamResolvedEvent,
  type AppendExpectedRevision,
  type RecordedEvent as ServerEvent,
  type JSONType,
  type Position,
  BACKWARDS,
  END,
  EventStoreDBClient,
  FORWARDS,
  START,
  StreamNotFoundError,
  WrongExpectedVersionError,
  jsonEvent,
  streamNameFilter,
} from '@eventstore/db-client'
import { KennelError } from '../errors.ts'
import {
  type AppendOptions,
  type AppendResult,
  type EventStore,
  type ExpectedRevision,
  type NewEvent,
  type OpenOptions,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type SubscribeOptions,
  type Subscription,
  WrongExpectedRevisionError,
  matchesFilter,
  prepareAppend,
} from './port.ts'

// EventStoreDB/KurrentDB event store (docs/ARCHITECTURE.md).
// - Namespace: `?namespace=name` (default `kennel`) prefixes every stream as `name:stream`, so one
//   server holds several stores (and each test its own); readAll and subscriptions see only the
//   namespace. The environment marker (R8) is the stream `name-meta`, which no port stream can be.
// - Position: the commit position of the event in $all. Appends through gRPC are implicit
//   transactions whose events have commit = prepare position, so it is unique and increasing
//   and {commit: n, prepare: n} seeks back to it. Limits: events written by legacy explicit
//   (TCP) transactions share one commit position; positions above 2^53 (a 9 PB log) lose precision.
// - Idempotency is the server's: a retry with the same ids and expected revision returns success;
//   an id reused in another stream is not detected (ids are unique only within a stream's recent
//   writes), and with `any` it is best effort (the server's idempotence check looks only at
//   recent writes of the stream).
// - readStream reports the position the server gives for stream reads; servers that read streams
//   from the index alone give none (-1 here) or 2^64-1.
// - readAll and headPosition filter $all on the client: their cost grows with other namespaces.

const META_TYPE = 'KennelStoreCreated'

function parseUrl(url: string): { connectionString: string; namespace: string } {
  const [base, query = ''] = url
    .replace(/^kurrentdb(\+discover)?:\/\//, (_, d: string | undefined) => `esdb${d ?? ''}://`)
    .split('?', 2) as [string, string?]
  const params = new URLSearchParams(query)
  const namespace = params.get('namespace') ?? 'kennel'
  if (!/^[a-z0-9_]{1,64}$/.test(namespace))
    throw new KennelError(
      'KENNEL_ERR_EVENTSTORE_URL',
      `invalid namespace ${JSON.stringify(namespace)}: lower-case letters, digits and _`,
    )
  params.delete('namespace')
  const rest = params.toString()
  return { connectionString: rest ? `${base}?${rest}` : base, namespace }
}

export async function openEsdbEventStore(url: string, options: OpenOptions): Promise<EventStore> {
  const { connectionString, namespace } = parseUrl(url)
  const client = EventStoreDBClient.connectionString(connectionString)
  try {
    const environment = await initialise(client, namespace, options.environment)
    return new EsdbEventStore(client, namespace, environment)
  } catch (err) {
    await client.dispose()
    if (err instanceof KennelError) throw err
    throw new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `cannot open the EventStoreDB event store (namespace ${namespace}): ${(err as Error).message}`,
      { namespace },
      { cause: err },
    )
  }
}

/** The first event of `<namespace>-meta` names the environment; `no_stream` makes two processes
 * creating it at once agree on one. */
async function initialise(client: EventStoreDBClient, namespace: string, environment: string): Promise<string> {
  const stream = `${namespace}-meta`
  const stored = async (): Promise<string | undefined> => {
    try {
      for await (const r of client.readStream(stream, { fromRevision: START, maxCount: 1 })) {
        return (r.event?.data as { environment?: string } | undefined)?.environment
      }
    } catch (err) {
      if (!(err instanceof StreamNotFoundError)) throw err
    }
    return undefined
  }
  let value = await stored()
  if (value === undefined) {
    try {
      await client.appendToStream(
        stream,
        jsonEvent({ type: META_TYPE, data: { environment, created: new Date().toISOString() } }),
        { expectedRevision: 'no_stream' },
      )
      value = environment
    } catch (err) {
      if (!(err instanceof WrongExpectedVersionError)) throw err
      value = await stored()
    }
  }
  if (value !== environment) {
    throw new KennelError(
      'KENNEL_ERR_ENVIRONMENT_MISMATCH',
      `event store namespace ${namespace} was created by a ${value} environment; refusing to open it as ${environment} (R8)`,
      { stored: value, opening: environment },
    )
  }
  return value
}

const toServerRevision = (expected: ExpectedRevision): AppendExpectedRevision =>
  typeof expected === 'number' ? BigInt(expected) : expected

const at = (n: number): Position => ({ commit: BigInt(n), prepare: BigInt(n) })

class EsdbEventStore implements EventStore {
  readonly kind = 'esdb' as const
  private closed = false
  private readonly subscriptions = new Set<Subscription>()
  private readonly prefix: string

  constructor(
    private readonly client: EventStoreDBClient,
    namespace: string,
    readonly environment: string,
  ) {
    this.prefix = `${namespace}:`
  }

  async append(stream: string, events: readonly NewEvent[], options: AppendOptions = {}): Promise<AppendResult> {
    this.assertOpen()
    const expected = options.expectedRevision ?? 'any'
    const prepared = prepareAppend(stream, events, expected)
    try {
      const result = await this.client.appendToStream(
        this.prefix + stream,
        prepared.map((e) => jsonEvent({ id: e.id, type: e.type, data: e.data as JSONType, metadata: e.metadata })),
        { expectedRevision: toServerRevision(expected) },
      )
      return {
        nextExpectedRevision: Number(result.nextExpectedRevision),
        position: Number(result.position?.commit ?? -1),
      }
    } catch (err) {
      if (err instanceof WrongExpectedVersionError) {
        const actual = err.actualVersion === 'no_stream' ? 'no_stream' : Number(err.actualVersion)
        throw new WrongExpectedRevisionError(stream, expected, actual)
      }
      throw err
    }
  }

  async readStream(stream: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen()
    const backwards = options.direction === 'backwards'
    const out: RecordedEvent[] = []
    try {
      const read = this.client.readStream(this.prefix + stream, {
        direction: backwards ? BACKWARDS : FORWARDS,
        fromRevision: options.fromRevision !== undefined ? BigInt(options.fromRevision) : backwards ? END : START,
        ...(options.maxCount !== undefined && { maxCount: options.maxCount }),
      })
      for await (const r of read) {
        const e = r.event && this.toRecorded(r.event)
        if (e) out.push(e)
      }
    } catch (err) {
      if (!(err instanceof StreamNotFoundError)) throw err
    }
    return out
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen()
    const backwards = options.direction === 'backwards'
    const max = options.maxCount ?? Infinity
    const out: RecordedEvent[] = []
    if (max <= 0) return out
    // $all holds every namespace and the system streams: filter here, stop once enough match
    const read = this.client.readAll({
      direction: backwards ? BACKWARDS : FORWARDS,
      fromPosition: backwards
        ? options.before !== undefined
          ? at(options.before)
          : END
        : options.after
          ? at(options.after)
          : START,
    })
    for await (const r of read) {
      const e = this.fromAll(r)
      // the port's bounds are exclusive; the server's start position is inclusive
      if (
        !e ||
        (backwards ? options.before !== undefined && e.position >= options.before : e.position <= (options.after ?? 0))
      )
        continue
      if (!matchesFilter(e, options.filter)) continue
      out.push(e)
      if (out.length >= max) break
    }
    await read.cancel()
    return out
  }

  /** Catch-up subscription on $all from `after`, filtered to the namespace on the server. caughtUp
   * is signalled once the event at the head read when it started has been handled, not from the
   * server's own caughtUp message: servers before 23.10 do not send one, and when it arrives the
   * events before it may still sit unhandled in the stream's buffer. */
  subscribe(options: SubscribeOptions): Subscription {
    this.assertOpen()
    const after = options.after ?? 0
    const live = this.client.subscribeToAll({
      fromPosition: after > 0 ? at(after) : START,
      filter: streamNameFilter({ prefixes: [this.prefix] }),
    })
    let stopped = false
    let caughtUp = false
    const signalCaughtUp = (): void => {
      if (caughtUp || stopped) return
      caughtUp = true
      options.onCaughtUp?.()
    }
    const run = async (): Promise<void> => {
      const head = await this.headPosition()
      if (head <= after) signalCaughtUp()
      for await (const r of live) {
        if (stopped) return
        const e = this.fromAll(r)
        if (!e || e.position <= after) continue
        if (matchesFilter(e, options.filter)) await options.onEvent(e)
        else options.onCheckpoint?.(e.position)
        if (e.position >= head) signalCaughtUp()
      }
    }
    const closed = run().then(
      () => {},
      (err: unknown) => {
        if (stopped) return
        stopped = true
        void live.unsubscribe()
        options.onError?.(err instanceof Error ? err : new Error(String(err)))
      },
    )
    const sub: Subscription = {
      closed,
      async stop() {
        stopped = true
        await live.unsubscribe()
        await closed
      },
    }
    this.subscriptions.add(sub)
    void closed.then(() => this.subscriptions.delete(sub))
    return sub
  }

  async headPosition(): Promise<number> {
    this.assertOpen()
    return (await this.readAll({ direction: 'backwards', maxCount: 1 }))[0]?.position ?? 0
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.all([...this.subscriptions].map((s) => s.stop()))
    await this.client.dispose()
  }

  /** an event of this namespace from $all, or undefined (other namespaces, system and link events) */
  private fromAll(r: AllStreamResolvedEvent): RecordedEvent | undefined {
    return r.event && this.toRecorded(r.event)
  }

  private toRecorded(e: ServerEvent): RecordedEvent | undefined {
    if (!e.streamId.startsWith(this.prefix) || e.type.startsWith('$') || !e.isJson) return undefined
    return {
      id: e.id,
      type: e.type,
      stream: e.streamId.slice(this.prefix.length),
      revision: Number(e.revision),
      position: Number(e.position?.commit ?? -1),
      time: e.created.toISOString(),
      data: e.data,
      metadata: (e.metadata ?? {}) as RecordedEvent['metadata'],
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new KennelError('KENNEL_ERR_EVENTSTORE_CLOSED', 'event store is closed')
  }
}
