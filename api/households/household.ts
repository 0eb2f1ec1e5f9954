import { KennelError } from '../../infra/errors.ts'
import type { Decider } from '../../infra/eventstore/command.ts'
import type { HouseholdEvent } from './events.ts'

// The household (stream `household-{householdId}`): pure decide/evolve, handled by the one command
// handler (infra/eventstore/command.ts). Its toys are paired by the devices context (DeviceClaimed
// in the toy's stream, devices/claim.ts), its erasure is the accounts context's (erasure.ts).

export interface HouseholdState {
  householdId: string | undefined
}

export const initialHouseholdState: HouseholdState = { householdId: undefined }

export type HouseholdCommand = {
  type: 'CreateHousehold'
  householdId: string
  ownerAccountId: string
  now: Date
  /** the name the owner gave it, already sealed with the owner's person key (R12) */
  nameSealed?: string | undefined
}

export function decide(command: HouseholdCommand, state: HouseholdState): HouseholdEvent[] {
  switch (command.type) {
    case 'CreateHousehold': {
      // the id is new and random: an existing stream is a conflict, as an append with no_stream
      if (state.householdId !== undefined)
        throw new KennelError('KENNEL_ERR_WRONG_EXPECTED_REVISION', `household ${command.householdId} already exists`)
      const { householdId, ownerAccountId, now, nameSealed } = command
      return [
        {
          type: 'HouseholdCreated',
          data: {
            householdId,
            ownerAccountId,
            createdAt: now.toISOString(),
            ...(nameSealed !== undefined ? { nameSealed } : {}),
          },
        },
      ]
    }
    default: {
      const _: never = command.type
      return _
    }
  }
}

export function evolve(state: HouseholdState, event: HouseholdEvent): HouseholdState {
  switch (event.type) {
    case 'HouseholdCreated':
      return { ...state, householdId: event.data.householdId }
    default: {
      const _: never = event.type
      return _
    }
  }
}

export const householdDecider: Decider<HouseholdCommand, HouseholdState, HouseholdEvent> = {
  initialState: initialHouseholdState,
  evolve,
  decide,
}
