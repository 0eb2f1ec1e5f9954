import { accountStream } from '../api/accounts/events.ts'
import type { Config } from '../infra/config.ts'
import { KeyRing, loadMasterKey, open } from '../infra/blobstore/keys.ts'
import { KennelError } from '../infra/errors.ts'
import { openKeyStore } from '../infra/keystore/open.ts'
import type { KeyStore } from '../infra/keystore/port.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import { ERASED, type ContactResolver } from '../projections/breach/contacts.ts'

// The breach report's contact resolver (R16), wired here because it joins two contexts: the
// accounts' addresses are sealed (AES-256-GCM) with each person's own key in `AccountCreated`'s
// `emailSealed` (api/accounts/personal-data.ts), and the person keys are wrapped by the master
// key (R12), kept in the key store that goes with the event store (infra/keystore/open.ts: the
// PostgreSQL schema a cluster shares, else the data dir). Each call opens a fresh key ring and
// drops it, so no person key outlives the report in memory and a key shredded since the last
// report, on any node, reads as erased.

/** the newest sealed address on the account's stream (`AccountCreated`, or a later event carrying one) */
async function sealedAddress(store: EventStore, accountId: string): Promise<string | undefined> {
  const events = await store.readStream(accountStream(accountId))
  return events
    .map((e) => (e.data as Record<string, unknown> | null)?.emailSealed)
    .filter((v): v is string => typeof v === 'string' && v !== '')
    .at(-1)
}

export function accountContacts(deps: { config: Config; store: EventStore }): ContactResolver {
  return async (accountIds) => {
    const contacts = new Map<string, string>()
    let ring: { keys: KeyStore; personKeys: KeyRing } | undefined
    try {
      for (const accountId of accountIds) {
        const sealed = await sealedAddress(deps.store, accountId)
        if (sealed === undefined) continue
        if (!ring) {
          const keys = await openKeyStore(deps.config)
          ring = { keys, personKeys: new KeyRing(keys, loadMasterKey(deps.config), 'person') }
        }
        const key = await ring.personKeys.existingKey(accountId)
        try {
          contacts.set(
            accountId,
            key ? open(key, Buffer.from(sealed, 'base64'), `email:${accountId}`).toString('utf8') : ERASED,
          )
        } catch (err) {
          throw new KennelError(
            'KENNEL_ERR_CONFIG',
            `the contact address of account ${accountId} does not open with its person key: is KENNEL_MASTER_KEY the key this data was written with?`,
            undefined,
            { cause: err },
          )
        }
      }
    } finally {
      await ring?.keys.close()
    }
    return contacts
  }
}
