import t from 'tap'
import type { HouseholdEvent } from '../../../api/households/events.ts'
import { householdDecider } from '../../../api/households/household.ts'
import { given } from '../../helpers/decider.ts'

// The household's decisions as given/when/then: pure, no store.

const t0 = new Date('2030-01-01T00:00:00Z')
const created: HouseholdEvent = {
  type: 'HouseholdCreated',
  data: { householdId: 'h1', ownerAccountId: 'a1', createdAt: t0.toISOString(), nameSealed: 'sealed' },
}

t.test('a household is created once, owned by the caller, with its name sealed or without one', async (t) => {
  given(householdDecider, [])
    .when({ type: 'CreateHousehold', householdId: 'h1', ownerAccountId: 'a1', now: t0, nameSealed: 'sealed' })
    .then(t, [created])
  given(householdDecider, [])
    .when({ type: 'CreateHousehold', householdId: 'h1', ownerAccountId: 'a1', now: t0, nameSealed: undefined })
    .then(t, [
      { type: 'HouseholdCreated', data: { householdId: 'h1', ownerAccountId: 'a1', createdAt: t0.toISOString() } },
    ])
  given(householdDecider, [created])
    .when({ type: 'CreateHousehold', householdId: 'h1', ownerAccountId: 'a2', now: t0 })
    .refused(t, 'KENNEL_ERR_WRONG_EXPECTED_REVISION')
})
