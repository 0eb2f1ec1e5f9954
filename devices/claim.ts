import { KennelError } from '../infra/errors.ts'
import { claimSecretMatches, hashClaimSecret, parseClaimCode } from './claim-code.ts'
import { ClaimRefused, decide } from './device.ts'
import { handleDeviceCommand, loadDevice, metadataOf, nowOf, type ClaimDeps } from './device-store.ts'
import { securityStream } from '../infra/net/events.ts'
import type { ClaimCodeRejected, ClaimCodeRejectedReason } from './events.ts'

// Pairing (claim codes): single use, expiring, checked against one argon2id hash. Every refusal
// is recorded as ClaimCodeRejected in the day's security stream — evidence for the security
// monitor — and leaves the device's own stream untouched.

const HOUSEHOLD_ID = /^[A-Za-z0-9_-]{1,64}$/

// an unknown or unclaimable device costs the same argon2id verification as a known one, so the
// answer's timing does not tell which device ids exist
let dummyHash: Promise<string> | undefined
const dummy = (): Promise<string> => (dummyHash ??= hashClaimSecret('kennel: no claim code for this device'))

export async function claimDevice(
  deps: ClaimDeps,
  claimCode: string,
  householdId: string,
): Promise<{ deviceId: string }> {
  if (typeof householdId !== 'string' || !HOUSEHOLD_ID.test(householdId)) {
    throw new KennelError('KENNEL_ERR_VALIDATION', 'householdId must be 1-64 letters, digits, - or _')
  }
  const parsed = parseClaimCode(claimCode)
  if (!parsed) return reject(deps, undefined, householdId, 'malformed')
  const { deviceId, secret } = parsed
  const { state } = await loadDevice(deps.store, deviceId)
  const secretMatches =
    (await claimSecretMatches(state.claimCodeHash ?? (await dummy()), secret)) && state.claimCodeHash !== undefined
  try {
    // a concurrent append (another claim, a revocation) makes the retry decide on the new state
    await handleDeviceCommand(deps, deviceId, (state) =>
      decide({ type: 'ClaimDevice', householdId, secretMatches, now: nowOf(deps) }, state),
    )
  } catch (err) {
    if (err instanceof ClaimRefused) return reject(deps, deviceId, householdId, err.reason)
    throw err
  }
  return { deviceId }
}

async function reject(
  deps: ClaimDeps,
  deviceId: string | undefined,
  householdId: string,
  reason: ClaimCodeRejectedReason,
): Promise<never> {
  const now = nowOf(deps)
  const event: ClaimCodeRejected = {
    type: 'ClaimCodeRejected',
    data: { ...(deviceId !== undefined ? { deviceId } : {}), householdId, reason, rejectedAt: now.toISOString() },
  }
  await deps.store.append(securityStream(now), [{ type: event.type, data: event.data, metadata: metadataOf(deps) }], {
    expectedRevision: 'any',
  })
  throw new ClaimRefused(reason)
}
