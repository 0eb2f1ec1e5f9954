import type { BlobStore } from '../../infra/blobstore/port.ts'
import { KennelError } from '../../infra/errors.ts'
import type { EventMetadata, EventStore } from '../../infra/eventstore/port.ts'
import type { Documents } from '../../projections/projection.ts'
import { retireDevice } from '../../devices/revoke.ts'
import { householdsOf } from '../households/projection.ts'
import { recordingsOfHousehold } from '../recordings/projection.ts'
import { accountStream, type AccountErased, type SessionEnded } from './events.ts'
import { accountById, erasedAccount, openSessionsOf } from './projection.ts'

// Erasure by crypto-shredding (R12). Events are never rewritten: what is personal in them is
// sealed with the person's own key, and erasing the person deletes that key, so the history
// keeps its hashes (the audit log still verifies) while the data reads `[erased]` everywhere.
// The steps run in an order that a crash can interrupt and a retry finish: toys, recordings and
// keys first (each step idempotent), AccountErased last, as the record that erasure completed.

/** what an erasure is recorded with when the holder asked for it themselves */
export const HOLDER_REQUEST = 'holder-request'

export interface ErasureDeps {
  store: EventStore
  /** the accounts, households, recordings and devices read models, caught up */
  docs: Documents
  blobs: BlobStore
  /** the per-person keys (api/accounts/personal-data.ts PersonalData, or a KeyRing) */
  personKeys: { shred(personId: string): Promise<void> }
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
  const deviceIds = households.flatMap((h) => h.deviceIds)
  const recordings = households.flatMap((h) => recordingsOfHousehold(deps.docs, h.householdId))
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
  for (const h of households) await deps.blobs.shredHousehold(h.householdId)
  await deps.personKeys.shred(accountId)
  const ended: SessionEnded[] = openSessionsOf(deps.docs, accountId).map((s) => ({
    type: 'SessionEnded',
    data: { accountId, sessionId: s.sessionId, reason: 'account-erased' },
  }))
  const erased: AccountErased = {
    type: 'AccountErased',
    data: {
      accountId,
      erasedAt: deps.now.toISOString(),
      reason: why,
      householdIds: households.map((h) => h.householdId),
      deviceIds,
      recordingIds: recordings.map((r) => r.recordingId),
    },
  }
  await deps.store.append(
    accountStream(accountId),
    [...ended, erased].map((e) => ({ ...e, metadata: deps.metadata })),
  )
  return erased.data
}
