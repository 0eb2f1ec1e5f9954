import type { Config } from '../config.ts'
import type { Logger } from '../log.ts'
import { fileKeyStore, type FileKeyStore } from './files.ts'
import type { KeyRingName, KeyStore } from './port.ts'

/** The key store that goes with the event store: PostgreSQL's schema when the events are there
 * (a cluster's nodes share it), files in the data dir otherwise. With EventStoreDB the keys stay
 * in files, which is right for one node only (docs/ARCHITECTURE.md). */
export async function openKeyStore(
  config: Pick<Config, 'eventStoreUrl' | 'dataDir'>,
  log?: Pick<Logger, 'info' | 'warn'>,
): Promise<KeyStore> {
  if (config.eventStoreUrl.startsWith('postgres://') || config.eventStoreUrl.startsWith('postgresql://')) {
    const { openPostgresKeyStore } = await import('./postgres.ts')
    const store = await openPostgresKeyStore(config.eventStoreUrl)
    try {
      await adoptFileKeys(store, fileKeyStore(config.dataDir), log)
    } catch (err) {
      await store.close()
      throw err
    }
    return store
  }
  return fileKeyStore(config.dataDir)
}

const RINGS: readonly KeyRingName[] = ['person', 'household-data']

/** Keys an earlier kennel kept in this node's data dir, moved into the shared store: each wrapped
 * key as it is (same master key, same wrapping), each tombstone as a shred. A key the shared store
 * already holds otherwise (another node made one for the same owner before keys were shared) is
 * not replaced: the file is kept as `{owner}.key.superseded` and the conflict logged, since what
 * this node sealed with it opens only with it. Returns how many owners were moved. */
export async function adoptFileKeys(
  shared: KeyStore,
  files: FileKeyStore,
  log?: Pick<Logger, 'info' | 'warn'>,
): Promise<number> {
  let moved = 0
  for (const ring of RINGS) {
    for (const owner of files.owners(ring)) {
      const local = await files.read(ring, owner)
      if (local?.state === 'live') {
        const stored = await shared.create(ring, owner, local.wrapped)
        if (stored.state === 'live' && !stored.wrapped.equals(local.wrapped)) {
          log?.warn(
            { ring, owner },
            'a key in the data dir differs from the shared one for the same owner: kept as .key.superseded; what this node sealed with it opens only with it',
          )
          await files.remove(ring, owner, 'superseded')
          continue
        }
      } else {
        await shared.shred(ring, owner)
      }
      await files.remove(ring, owner)
      moved++
    }
  }
  if (moved > 0) log?.info({ owners: moved }, 'keys moved from the data dir into the shared key store')
  return moved
}
