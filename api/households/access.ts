import { KennelError } from '../../infra/errors.ts'
import type { Documents } from '../../projections/projection.ts'
import { householdById, type HouseholdDoc } from './projection.ts'

/** R4: a parent reaches only households they belong to. Someone else's household answers exactly
 * like one that does not exist, so ids cannot be probed. */
export function memberHousehold(docs: Documents, accountId: string, householdId: string): HouseholdDoc {
  const h = householdById(docs, householdId)
  if (!h?.members.includes(accountId)) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no such household')
  return h
}
