import type { BlobStore } from '../../infra/blobstore/port.ts'
import { KennelError } from '../../infra/errors.ts'
import type { EventMetadata, EventStore } from '../../infra/eventstore/port.ts'
import type { Documents } from '../../projections/projection.ts'
import { retireDevice } from '../../devices/revoke.ts'
import { householdsOf } from '../households/projection.ts'
import { recordingsOfHousehold } from '../recordings/projection.ts'
import { accountStream, type AccountErased, type AccountErasureStarted, type SessionEnded } from './events.ts'
import { accountById, erasedAccount, erasureStarted, openSessionsOf } from './projection.ts'

// Erasure by crypto-shredding (R12). Events are never rewritten: what is personal in them is
// sealed with the person's own key, and erasing the person deletes that key, so the history
// keeps its hashes (the audit log still verifies) while the data reads `[erased]` everywhere.
// The steps run in an order that a crash can interrupt and a retry finish: AccountErasureStarted
// first (so ops can list an erasure left unfinished: `kennel account erasures --pending`), then
// toys, recordings and keys (each step idempotent), AccountErased last, as the record that
// erasure completed.

/** what an erasure is recorded with when the holder asked for it themselves */
export const HOLDER_REQUEST = 'holder-request'

export interface ErasureDeps {
  store: EventStore
  /** the accounts, households, recordings and devices read models, caught up */
  docs: Documents
  blobs: BlobStore
  /** the per-person keys (api/accounts/personal-data.ts PersonalData, or a KeyRing) */
  personKeys: { shred(personId: string): Promise<void> }
  /** the households' keys (the `household-data` ring: the embedded store's recording keys and the
   * sealed addresses of their toys, infra/keystore/sealed-source.ts), shredded with the household
   * whatever the blob store */
  householdKeys: { shred(householdId: string): Promise<void> }
  now: Date
  /** who erases: `account:{id}` (the holder), `cli:{user}` (ops); with credential, sourceIp… */
  metadata: EventMetadata
}

/** the reason recorded: printable text, no more than a sentence (it is not for personal data) */
export function erasureReason(reason: unknown): string {
  const text = typeof reason === 'string' ? reason.trim() : ''
  if (text.length === 0 || text.length > 200 || /[\u0000-\u001f\u007f]/.test(text)) {
    throw new KennelError(
      'KENNEL_ERR_VALIDATION',
      'an erasure needs a reason: 1-200 printable characters (a ticket number, "holder asked by mail"; not the person\'s data)',
    )
  }
  return text
}

export async function eraseAccount(
  deps: ErasureDeps,
  accountId: string,
  reason: string,
): Promise<AccountErased['data']> {
  const why = erasureReason(reason)
  if (erasedAccount(deps.docs, accountId))
    throw new KennelError('KENNEL_ERR_NOT_FOUND', `account ${accountId} was already erased`)
  if (!accountById(deps.docs, accountId)) throw new KennelError('KENNEL_ERR_NOT_FOUND', `no account ${accountId}`)
  // households of which the person is the last member go with them
  const households = householdsOf(deps.docs, accountId).filter((h) => h.members.every((m) => m === accountId))
  const recordings = households.flatMap((h) => recordingsOfHousehold(deps.docs, h.householdId))
  // an erasure that was interrupted is finished with what it set out to erase: its toys were
  // unpaired from the households since
  const started = erasureStarted(deps.docs, accountId)
  const householdIds = union(
    started?.householdIds,
    households.map((h) => h.householdId),
  )
  const deviceIds = union(
    started?.deviceIds,
    households.flatMap((h) => h.deviceIds),
  )
  const recordingIds = union(
    started?.recordingIds,
    recordings.map((r) => r.recordingId),
  )
  if (!started) {
    const start: AccountErasureStarted = {
      type: 'AccountErasureStarted',
      data: { accountId, startedAt: deps.now.toISOString(), reason: why, householdIds, deviceIds, recordingIds },
    }
    await deps.store.append(accountStream(accountId), [{ ...start, metadata: deps.metadata }])
  }
  const actor = typeof deps.metadata.actor === 'string' ? deps.metadata.actor : 'system:api'
  const credential = typeof deps.metadata.credential === 'string' ? deps.metadata.credential : undefined
  for (const deviceId of deviceIds) {
    await retireDevice(
      { store: deps.store, actor, ...(credential ? { credential } : {}), now: deps.now, docs: deps.docs },
      deviceId,
      'account-erased',
    )
  }
  for (const r of recordings) await deps.blobs.delete(r.objectKey)
  for (const householdId of householdIds) {
    await deps.blobs.shredHousehold(householdId)
    await deps.householdKeys.shred(householdId)
  }
  await deps.personKeys.shred(accountId)
  const ended: SessionEnded[] = openSessionsOf(deps.docs, accountId).map((s) => ({
    type: 'SessionEnded',
    data: { accountId, sessionId: s.sessionId, reason: 'account-erased' },
  }))
  const erased: AccountErased = {
    type: 'AccountErased',
    data: { accountId, erasedAt: deps.now.toISOString(), reason: why, householdIds, deviceIds, recordingIds },
  }
  await deps.store.append(
    accountStream(accountId),
    [...ended, erased].map((e) => ({ ...e, metadata: deps.metadata })),
  )
  return erased.data
}

const union = (a: readonly string[] | undefined, b: readonly string[]): string[] => [...new Set([...(a ?? []), ...b])]
