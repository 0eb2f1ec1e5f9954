import type { EventStore } from '../infra/eventstore/port.ts'
import type { ReadModelStore } from './readmodels/port.ts'

// How far the read models are behind the store, as any process can read it: the store's head
// minus each projection's stored checkpoint. It holds wherever the projector runs (this
// process, a worker thread, another machine) because both figures live in shared stores.

export interface ProjectorLag {
  head: number
  /** every named projection with its stored checkpoint (0: none stored yet) and distance to the head */
  projections: Array<{ name: string; position: number; behind: number }>
  /** the largest distance: events in the store not yet in every read model */
  behind: number
}

export async function projectorLag(
  store: Pick<EventStore, 'headPosition'>,
  readModels: Pick<ReadModelStore, 'checkpoints'>,
  names: readonly string[],
): Promise<ProjectorLag> {
  // checkpoints first: read the other way round, a commit in between could put one past the head
  const stored = await readModels.checkpoints()
  const head = await store.headPosition()
  const projections = names.map((name) => {
    const position = Math.max(0, stored.get(name) ?? 0)
    return { name, position, behind: Math.max(0, head - position) }
  })
  return { head, projections, behind: Math.max(0, ...projections.map((p) => p.behind)) }
}
