import t from 'tap'
import { accountDecider, type AccountCommand } from '../../../api/accounts/account.ts'
import type { AccountEvent, VerificationRequested } from '../../../api/accounts/events.ts'
import { given } from '../../helpers/decider.ts'

// The account's decisions (sign-up, a new confirmation token, confirming the address) as
// given/when/then: pure, no store.

const t0 = new Date('2030-01-01T00:00:00Z')
const hours = (h: number) => new Date(t0.getTime() + h * 3_600_000)
const token = (id: string, expiresAt = hours(24)): VerificationRequested['data'] => ({
  accountId: 'a1',
  verificationId: id,
  tokenHash: `hash-${id}`,
  passwordHash: `$argon2id$${id}`,
  expiresAt: expiresAt.toISOString(),
})
const create: AccountCommand = {
  type: 'CreateAccount',
  accountId: 'a1',
  emailHash: 'eh',
  emailSealed: 'sealed',
  passwordHash: '$argon2id$v1',
  now: t0,
  verification: token('v1'),
}
const created: AccountEvent[] = [
  {
    type: 'AccountCreated',
    data: {
      accountId: 'a1',
      emailHash: 'eh',
      emailSealed: 'sealed',
      passwordHash: '$argon2id$v1',
      createdAt: t0.toISOString(),
      verificationRequired: true,
    },
  },
  { type: 'VerificationRequested', data: token('v1') },
]
const verified: AccountEvent[] = [
  ...created,
  { type: 'AccountVerified', data: { accountId: 'a1', verificationId: 'v1', verifiedAt: hours(1).toISOString() } },
]
const erased: AccountEvent = {
  type: 'AccountErased',
  data: {
    accountId: 'a1',
    erasedAt: hours(2).toISOString(),
    reason: 'holder-request',
    householdIds: [],
    deviceIds: [],
    recordingIds: [],
  },
}
const verify = (tokenHash: string, now = hours(1)): AccountCommand => ({ type: 'VerifyAccount', tokenHash, now })

t.test('a sign-up creates an unconfirmed account and its first token, once', async (t) => {
  given(accountDecider, []).when(create).then(t, created)
  given(accountDecider, created).when(create).refused(t, 'KENNEL_ERR_WRONG_EXPECTED_REVISION')
})

t.test('a new token for an unconfirmed account; none for a confirmed or erased one, nor an unknown one', async (t) => {
  const again: AccountCommand = { type: 'RequestVerification', verification: token('v2') }
  given(accountDecider, created)
    .when(again)
    .then(t, [{ type: 'VerificationRequested', data: token('v2') }])
  given(accountDecider, verified).when(again).then(t, [])
  given(accountDecider, [...created, erased])
    .when(again)
    .then(t, [])
  given(accountDecider, []).when(again).refused(t, 'KENNEL_ERR_NOT_FOUND')
})

t.test('the newest token confirms the address once, before it expires', async (t) => {
  given(accountDecider, created)
    .when(verify('hash-v1'))
    .then(t, [
      { type: 'AccountVerified', data: { accountId: 'a1', verificationId: 'v1', verifiedAt: hours(1).toISOString() } },
    ])
  given(accountDecider, verified).when(verify('hash-v1')).refused(t, 'KENNEL_ERR_VERIFICATION_USED')
  given(accountDecider, created)
    .when(verify('hash-v1', hours(24)))
    .refused(t, 'KENNEL_ERR_VERIFICATION_EXPIRED')
  const replaced: AccountEvent[] = [...created, { type: 'VerificationRequested', data: token('v2') }]
  given(accountDecider, replaced).when(verify('hash-v1')).refused(t, 'KENNEL_ERR_VERIFICATION_EXPIRED')
  given(accountDecider, replaced)
    .when(verify('hash-v2'))
    .then(t, [
      { type: 'AccountVerified', data: { accountId: 'a1', verificationId: 'v2', verifiedAt: hours(1).toISOString() } },
    ])
  given(accountDecider, [...created, erased])
    .when(verify('hash-v1'))
    .refused(t, 'KENNEL_ERR_VERIFICATION_EXPIRED')
})

t.test(
  'an account created before confirmation existed is confirmed; logins and sessions change nothing here',
  async (t) => {
    const old: AccountEvent[] = [
      {
        type: 'AccountCreated',
        data: { accountId: 'a1', emailHash: 'eh', emailSealed: 's', passwordHash: 'p', createdAt: t0.toISOString() },
      },
      {
        type: 'SessionStarted',
        data: { accountId: 'a1', sessionId: 's1', tokenHash: 'th', expiresAt: hours(1).toISOString() },
      },
      { type: 'LoginFailed', data: { accountId: 'a1', emailHash: 'eh', reason: 'wrong-password', ip: '203.0.113.1' } },
    ]
    given(accountDecider, old).when(verify('hash-v1')).refused(t, 'KENNEL_ERR_VERIFICATION_USED')
    given(accountDecider, old)
      .when({ type: 'RequestVerification', verification: token('v2') })
      .then(t, [])
  },
)
