import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { ALL_EVENTS, MemoryDocuments, type Documents, type Projection } from './projection.ts'

export interface FollowedProjections {
  /** the read models, queryable at once; kept current as events arrive */
  readonly docs: Documents
  /** position of the last event applied */
  readonly position: number
  /** resolves once every event that existed at start has been applied */
  readonly caughtUp: Promise<void>
  /** resolves when the given position has been applied (read-your-writes after an append) */
  waitFor(position: number, timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

/** Follow the store from the beginning and keep the projections' documents in memory. Used by
 * processes that need read models without persisting them (the CLI, tests); the server uses the
 * persistent runner. A failed read is retried (logged as a warning); a projection that throws
 * stops them, logged as an error. */
export function followProjections(
  store: EventStore,
  projections: readonly Projection[],
  log?: Pick<Logger, 'warn' | 'error'>,
): FollowedProjections {
  const docs = new MemoryDocuments()
  const byType = new Map<string, Projection[]>()
  for (const p of projections) for (const type of p.eventTypes) byType.set(type, [...(byType.get(type) ?? []), p])
  const everything = byType.get(ALL_EVENTS[0]!) ?? []
  // only the projections' event types are read (in the store's query, or left out by the feed);
  // checkpoints move the position past the others, so waitFor works for any position
  const filter = everything.length > 0 ? undefined : { types: [...byType.keys()] }
  let position = 0
  const reached = (at: number): void => {
    position = at
    for (const w of waiters) if (w.position <= position) waiters.delete(w), w.resolve()
  }
  const waiters = new Set<{ position: number; resolve: () => void }>()
  let resolveCaughtUp!: () => void
  let rejectCaughtUp!: (err: Error) => void
  const caughtUp = new Promise<void>((resolve, reject) => {
    resolveCaughtUp = resolve
    rejectCaughtUp = reject
  })
  const sub = store.subscribe({
    ...(filter ? { filter } : {}),
    onEvent(event) {
      for (const p of everything) p.apply(docs, event)
      for (const p of byType.get(event.type) ?? []) p.apply(docs, event)
      reached(event.position)
    },
    onCheckpoint: reached,
    onCaughtUp: () => resolveCaughtUp(),
    onRetry: (err, delayMs) =>
      log?.warn({ err: err.message, delayMs }, 'in-memory read models: reading the event store failed; retrying'),
    onError: (err) => {
      log?.error({ err }, 'in-memory read models stopped following the event store')
      rejectCaughtUp(err)
    },
  })
  return {
    docs,
    get position() {
      return position
    },
    caughtUp,
    waitFor(target, timeoutMs = 5000) {
      if (target <= position) return Promise.resolve()
      return new Promise((resolve, reject) => {
        const w = { position: target, resolve: () => (clearTimeout(timer), resolve()) }
        const timer = setTimeout(
          () => (
            waiters.delete(w), reject(new Error(`read model did not reach position ${target} within ${timeoutMs} ms`))
          ),
          timeoutMs,
        )
        waiters.add(w)
      })
    },
    stop: () => sub.stop(),
  }
}
