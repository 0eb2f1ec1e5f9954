import { KennelError } from '../../infra/errors.ts'
import type { EventMetadata } from '../../infra/eventstore/port.ts'
import type { ApiContext } from '../context.ts'
import { accountStream, emailStream, type EmailReserved } from './events.ts'

// One account per e-mail address, enforced by the event store rather than the read model: a
// sign-up first appends EmailReserved to `email-{emailHash}` with the expected revision
// `no_stream`, so of two concurrent sign-ups exactly one wins. AccountCreated follows at once;
// if the process died between the two appends, the reservation would hold an address for an
// account that never came to be, so a reservation whose account does not exist is taken over
// once it is older than RESERVATION_TIMEOUT_MS (again with an expected revision), and so is the
// reservation of an erased account.

export const RESERVATION_TIMEOUT_MS = 60_000

/** whether an existing reservation still keeps the address from a new sign-up */
export function reservationHolds(last: EmailReserved['data'], holderExists: boolean, now: Date): boolean {
  return holderExists || now.getTime() - Date.parse(last.reservedAt) < RESERVATION_TIMEOUT_MS
}

const isConflict = (err: unknown) => err instanceof KennelError && err.code === 'KENNEL_ERR_WRONG_EXPECTED_REVISION'

/** true when the address is now reserved for `accountId`, false when another sign-up holds it */
export async function reserveEmail(
  ctx: ApiContext,
  emailHash: string,
  accountId: string,
  metadata: EventMetadata,
): Promise<boolean> {
  const stream = emailStream(emailHash)
  const event: EmailReserved = {
    type: 'EmailReserved',
    data: { emailHash, accountId, reservedAt: ctx.now().toISOString() },
  }
  try {
    await ctx.store.append(stream, [{ ...event, metadata }], { expectedRevision: 'no_stream' })
    return true
  } catch (err) {
    if (!isConflict(err)) throw err
  }
  const [last] = await ctx.store.readStream(stream, { direction: 'backwards', maxCount: 1 })
  if (!last) return false
  const holder = (last.data as EmailReserved['data']).accountId
  // an erased holder keeps nothing: the address may sign up again (R12)
  const holderEvents = await ctx.store.readStream(accountStream(holder))
  const holderErased = holderEvents.some((e) => e.type === 'AccountErased')
  if (!holderErased && reservationHolds(last.data as EmailReserved['data'], holderEvents.length > 0, ctx.now()))
    return false
  try {
    await ctx.store.append(stream, [{ ...event, metadata }], { expectedRevision: last.revision })
    return true
  } catch (err) {
    if (isConflict(err)) return false
    throw err
  }
}
