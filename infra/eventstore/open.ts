import path from 'node:path'
import { KennelError } from '../errors.ts'
import type { EventStore, OpenOptions } from './port.ts'

/** Open the event store named by a KENNEL_EVENTSTORE URL: `sqlite:<file>`, `postgres://…`,
 * `esdb://…` / `kurrentdb://…`. Adapters are loaded on demand so the embedded default pulls in
 * no network client. */
export async function openEventStore(url: string, options: OpenOptions): Promise<EventStore> {
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length)
    if (file === '')
      throw new KennelError('KENNEL_ERR_EVENTSTORE_URL', 'sqlite: needs a file path (sqlite:/path/events.sqlite)')
    const { openSqliteEventStore } = await import('./sqlite.ts')
    return openSqliteEventStore(path.resolve(file), options)
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const { openPostgresEventStore } = await import('./postgres.ts')
    return openPostgresEventStore(url, options)
  }
  if (url.startsWith('esdb://') || url.startsWith('esdb+discover://') || url.startsWith('kurrentdb://')) {
    const { openEsdbEventStore } = await import('./esdb.ts')
    return openEsdbEventStore(url, options)
  }
  throw new KennelError(
    'KENNEL_ERR_EVENTSTORE_URL',
    `unsupported event store URL ${JSON.stringify(url.replace(/\/\/[^@]*@/, '//***@'))}: use sqlite:, postgres:// or esdb://`,
  )
}
