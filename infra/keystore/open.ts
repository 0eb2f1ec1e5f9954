import type { Config } from '../config.ts'
import { fileKeyStore } from './files.ts'
import type { KeyStore } from './port.ts'

/** The key store that goes with the event store: PostgreSQL's schema when the events are there
 * (a cluster's nodes share it), files in the data dir otherwise. With EventStoreDB the keys stay
 * in files, which is right for one node only (docs/ARCHITECTURE.md). */
export async function openKeyStore(config: Pick<Config, 'eventStoreUrl' | 'dataDir'>): Promise<KeyStore> {
  if (config.eventStoreUrl.startsWith('postgres://') || config.eventStoreUrl.startsWith('postgresql://')) {
    const { openPostgresKeyStore } = await import('./postgres.ts')
    return openPostgresKeyStore(config.eventStoreUrl)
  }
  return fileKeyStore(config.dataDir)
}
