import path from 'node:path'
import { KennelError } from '../../infra/errors.ts'
import type { EntryLookups, ReadModelStore } from './port.ts'

/** Where the read models of an event store live: beside an embedded store (`events.sqlite` →
 * `readmodels.sqlite`, `x.sqlite` → `x.readmodels.sqlite`), in the same database and schema for
 * PostgreSQL. */
export function readModelLocation(eventStoreUrl: string): string {
  if (eventStoreUrl.startsWith('sqlite:')) {
    const file = path.resolve(eventStoreUrl.slice('sqlite:'.length))
    const base = path.basename(file).replace(/\.sqlite$/, '')
    return `sqlite:${path.join(path.dirname(file), base === 'events' ? 'readmodels.sqlite' : `${base}.readmodels.sqlite`)}`
  }
  if (eventStoreUrl.startsWith('postgres://') || eventStoreUrl.startsWith('postgresql://')) return eventStoreUrl
  throw new KennelError(
    'KENNEL_ERR_EVENTSTORE_URL',
    'persistent read models need an sqlite: or postgres:// event store; use the in-memory follower with EventStoreDB',
  )
}

export async function openReadModels(location: string): Promise<ReadModelStore & EntryLookups> {
  if (location.startsWith('sqlite:')) {
    const { openSqliteReadModels } = await import('./sqlite.ts')
    return openSqliteReadModels(location.slice('sqlite:'.length))
  }
  const { openPostgresReadModels } = await import('./postgres.ts')
  return openPostgresReadModels(location)
}
