// Events of the households context, in `household-{householdId}` (docs/EVENTS.md). Pairing a toy
// is the devices context's DeviceClaimed (in `device-{deviceId}`, carrying householdId).

export interface HouseholdCreated {
  type: 'HouseholdCreated'
  data: {
    householdId: string
    ownerAccountId: string
    createdAt: string
    /** the name the owner gave it, sealed with the owner's person key (R12; absent: none given) */
    nameSealed?: string
  }
}

export type HouseholdEvent = HouseholdCreated

export const householdStream = (householdId: string): string => `household-${householdId}`
