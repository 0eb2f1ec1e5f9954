import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import type { Documents, DocumentTx, Projection } from '../../projections/projection.ts'
import type { DeviceClaimed, DeviceUnpaired } from '../../devices/events.ts'
import type { AccountErased } from '../accounts/events.ts'
import type { HouseholdEvent } from './events.ts'

// Households, their members and their paired toys (R4: a parent sees only their own household).

export interface HouseholdDoc {
  householdId: string
  ownerAccountId: string
  /** sealed with the owner's person key: open with PersonalData and householdNameLabel */
  nameSealed?: string
  members: string[]
  deviceIds: string[]
  createdAt: string
}

const HOUSEHOLDS = 'api.households'

export const householdsProjection: Projection = {
  name: 'api-households',
  version: 3,
  eventTypes: ['HouseholdCreated', 'DeviceClaimed', 'DeviceUnpaired', 'AccountErased'],
  apply(tx: DocumentTx, recorded: RecordedEvent) {
    const event = { type: recorded.type, data: recorded.data } as
      | HouseholdEvent
      | DeviceClaimed
      | DeviceUnpaired
      | AccountErased
    switch (event.type) {
      case 'HouseholdCreated': {
        const { householdId, ownerAccountId, createdAt, nameSealed } = event.data
        tx.put(HOUSEHOLDS, householdId, {
          householdId,
          ownerAccountId,
          ...(nameSealed !== undefined ? { nameSealed } : {}),
          members: [ownerAccountId],
          deviceIds: [],
          createdAt,
        } satisfies HouseholdDoc)
        return
      }
      case 'DeviceClaimed': {
        const h = tx.get<HouseholdDoc>(HOUSEHOLDS, event.data.householdId)
        if (h && !h.deviceIds.includes(event.data.deviceId))
          tx.put(HOUSEHOLDS, h.householdId, { ...h, deviceIds: [...h.deviceIds, event.data.deviceId] })
        return
      }
      case 'DeviceUnpaired': {
        const h = tx.get<HouseholdDoc>(HOUSEHOLDS, event.data.householdId)
        if (h)
          tx.put(HOUSEHOLDS, h.householdId, { ...h, deviceIds: h.deviceIds.filter((d) => d !== event.data.deviceId) })
        return
      }
      case 'AccountErased': {
        // the households erased with their last member go; in the others the person is no member
        for (const id of event.data.householdIds) tx.delete(HOUSEHOLDS, id)
        for (const h of [...tx.values<HouseholdDoc>(HOUSEHOLDS)]) {
          if (h.members.includes(event.data.accountId))
            tx.put(HOUSEHOLDS, h.householdId, { ...h, members: h.members.filter((m) => m !== event.data.accountId) })
        }
        return
      }
      default: {
        const _: never = event
        return _
      }
    }
  },
}

export const householdById = (docs: Documents, householdId: string): HouseholdDoc | undefined =>
  docs.get<HouseholdDoc>(HOUSEHOLDS, householdId)

export function householdsOf(docs: Documents, accountId: string): HouseholdDoc[] {
  return [...docs.values<HouseholdDoc>(HOUSEHOLDS)].filter((h) => h.members.includes(accountId))
}

/** what a household's sealed name is bound to (PersonalData label) */
export const householdNameLabel = (householdId: string): string => `household-name:${householdId}`
