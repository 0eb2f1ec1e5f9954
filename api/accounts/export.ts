import type { EventMetadata, EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import { KennelError } from '../../infra/errors.ts'
import type { Documents } from '../../projections/projection.ts'
import { deviceView } from '../../devices/registry.ts'
import { deviceStream } from '../../devices/events.ts'
import { householdStream } from '../households/events.ts'
import { householdNameLabel, householdsOf } from '../households/projection.ts'
import { recordingStream } from '../recordings/events.ts'
import { recordingsOfHousehold, recordingView, type RecordingDoc } from '../recordings/projection.ts'
import { accountStream, emailStream, type AccountExported } from './events.ts'
import { ERASED, type EmailProtector, type PersonalData } from './personal-data.ts'
import { householdOfSource, type HouseholdSources } from '../../infra/keystore/sealed-source.ts'
import { accountById } from './projection.ts'

// The export (R12; ETSI EN 303 645 5.11): everything kennel holds about a person and their
// households, as one JSON document, with what is sealed in the events opened with their key. It
// is itself recorded (AccountExported). Credentials' hashes (passwords, tokens) are left out: they
// are no one's data to read, and the document may travel by mail.

export const EXPORT_FORMAT = 'kennel-account-export/v1'

export interface ExportDeps {
  store: EventStore
  /** accounts, households, recordings and devices read models, caught up */
  docs: Documents
  emails: EmailProtector
  personalData: PersonalData
  /** the household keys that seal paired toys' addresses */
  householdSources: HouseholdSources
  now: Date
  /** a download URL for a stored recording (the API issues and records one); absent: none */
  downloadUrl?: (r: RecordingDoc) => Promise<{ url: string; expiresAt: string }>
  metadata: EventMetadata
}

const WITHHELD = new Set(['passwordHash', 'tokenHash'])

/** an event as the person may read it: sealed values opened (or `[erased]`), credential hashes withheld */
async function readable(deps: ExportDeps, accountId: string, e: RecordedEvent): Promise<Record<string, unknown>> {
  const data: Record<string, unknown> = {}
  for (const [k, v] of Object.entries((e.data ?? {}) as Record<string, unknown>)) {
    if (WITHHELD.has(k)) continue
    if (k === 'emailSealed' && typeof v === 'string') data.email = (await deps.emails.open(accountId, v)) ?? ERASED
    else if (k === 'nameSealed' && typeof v === 'string')
      data.name =
        (await deps.personalData.open(
          String((e.data as { ownerAccountId?: string }).ownerAccountId ?? accountId),
          householdNameLabel(String((e.data as { householdId?: string }).householdId)),
          v,
        )) ?? ERASED
    else data[k] = v
  }
  const { sourceIpSealed, sourceIpTag: _, sourceIpOwner: __, ...metadata } = e.metadata as Record<string, unknown>
  if (typeof sourceIpSealed === 'string') {
    // a toy's address opens with its household's key; a person's with theirs, and another
    // member's address is theirs, not the exporter's: left out
    const household = householdOfSource(e.metadata)
    if (household !== undefined)
      metadata.sourceIp = (await deps.householdSources.open(household, sourceIpSealed)) ?? ERASED
    else if (
      metadata.actor === `account:${accountId}` ||
      ((typeof metadata.actor !== 'string' || !metadata.actor.startsWith('account:')) &&
        e.stream === accountStream(accountId))
    )
      metadata.sourceIp = (await deps.personalData.openSource(accountId, sourceIpSealed)) ?? ERASED
  }
  return { position: e.position, time: e.time, stream: e.stream, type: e.type, data, metadata }
}

export async function exportAccount(deps: ExportDeps, accountId: string): Promise<Record<string, unknown>> {
  const account = accountById(deps.docs, accountId)
  if (!account) throw new KennelError('KENNEL_ERR_NOT_FOUND', `no account ${accountId}`)
  const own = await deps.store.readStream(accountStream(accountId))
  const created = own.find((e) => e.type === 'AccountCreated')
  const email =
    (await deps.emails.open(
      accountId,
      String((created?.data as { emailSealed?: string } | undefined)?.emailSealed ?? ''),
    )) ?? ERASED
  const streams = [emailStream(account.emailHash)]
  const households = []
  let recordingCount = 0
  for (const h of householdsOf(deps.docs, accountId)) {
    const recordings = []
    for (const r of recordingsOfHousehold(deps.docs, h.householdId)) {
      const url = r.status === 'stored' && deps.downloadUrl ? await deps.downloadUrl(r) : undefined
      recordings.push({
        ...recordingView(r),
        ...(url ? { downloadUrl: url.url, downloadUrlExpiresAt: url.expiresAt } : {}),
      })
      streams.push(recordingStream(r.recordingId))
    }
    recordingCount += recordings.length
    households.push({
      householdId: h.householdId,
      name:
        h.nameSealed === undefined
          ? null
          : ((await deps.personalData.open(h.ownerAccountId, householdNameLabel(h.householdId), h.nameSealed)) ??
            ERASED),
      role: h.ownerAccountId === accountId ? 'owner' : 'member',
      createdAt: h.createdAt,
      toys: h.deviceIds.map((deviceId) => {
        const v = deviceView(deps.docs, deviceId)
        return {
          deviceId,
          status: v?.status ?? 'unknown',
          claimedAt: v?.claimedAt,
          lastConnectedAt: v?.lastConnectedAt,
          lastDisconnectedAt: v?.lastDisconnectedAt,
        }
      }),
      recordings,
    })
    streams.push(householdStream(h.householdId), ...h.deviceIds.map(deviceStream))
  }
  const events = [...own]
  for (const stream of streams) events.push(...(await deps.store.readStream(stream)))
  events.sort((a, b) => a.position - b.position)
  const exported: AccountExported = {
    type: 'AccountExported',
    data: {
      accountId,
      exportedAt: deps.now.toISOString(),
      households: households.length,
      recordings: recordingCount,
      events: events.length,
    },
  }
  await deps.store.append(accountStream(accountId), [{ ...exported, metadata: deps.metadata }])
  return {
    format: EXPORT_FORMAT,
    exportedAt: exported.data.exportedAt,
    account: {
      accountId,
      email,
      createdAt: (created?.data as { createdAt?: string } | undefined)?.createdAt,
      verified: account.verified,
      roles: account.roles,
    },
    households,
    events: await Promise.all(events.map((e) => readable(deps, accountId, e))),
  }
}
