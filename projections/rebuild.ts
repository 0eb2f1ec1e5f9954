import { KennelError } from '../infra/errors.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import type { Projection } from './projection.ts'
import type { ReadModelStore } from './readmodels/port.ts'
import { startProjectionRunner } from './runner.ts'

export interface RebuildOptions {
  store: EventStore
  readModels: ReadModelStore
  projections: readonly Projection[]
  /** rebuild only these (default: all) */
  names?: readonly string[]
  batchSize?: number
  log?: Logger
  /** after each committed batch: the position reached and the head position when the rebuild started */
  onProgress?: (position: number, head: number) => void
}

export interface RebuildResult {
  projections: string[]
  /** head position when the rebuild started; everything up to it has been applied */
  head: number
  seconds: number
}

/** Forget the stored read models and apply every event again from the start. */
export async function rebuildProjections(o: RebuildOptions): Promise<RebuildResult> {
  const chosen = o.names ? o.projections.filter((p) => o.names!.includes(p.name)) : [...o.projections]
  const unknown = (o.names ?? []).filter((n) => !o.projections.some((p) => p.name === n))
  if (unknown.length > 0)
    throw new KennelError(
      'KENNEL_ERR_NOT_FOUND',
      `no projection named ${unknown.join(', ')} (known: ${o.projections.map((p) => p.name).join(', ')})`,
    )
  const started = performance.now()
  const head = await o.store.headPosition()
  for (const p of chosen) await o.readModels.reset(p.name)
  const runner = await startProjectionRunner({
    store: o.store,
    readModels: o.readModels,
    projections: chosen,
    batchSize: o.batchSize ?? 5000,
    log: o.log,
    failFast: true,
    onCommit: (position) => o.onProgress?.(position, head),
  })
  try {
    await runner.caughtUp
    await runner.waitFor(head, 24 * 3600 * 1000)
  } finally {
    await runner.stop()
  }
  return { projections: chosen.map((p) => p.name), head, seconds: (performance.now() - started) / 1000 }
}
