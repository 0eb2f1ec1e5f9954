import t from 'tap'
import {
  deviceDecider,
  evolve,
  foldDevice,
  initialDeviceState,
  type DeviceCommand,
  type IssuedCertificate,
} from '../../devices/device.ts'
import type { DeviceEvent } from '../../devices/events.ts'
import { given as givenEvents } from '../helpers/decider.ts'

// decide/evolve as given (past events) / when (a command) / then (new events or a refusal).

const t0 = new Date('2030-01-01T00:00:00Z')
const hours = (h: number) => new Date(t0.getTime() + h * 3_600_000)
const cert = (serial: string, publicKeyId = `pk-${serial}`): IssuedCertificate => ({
  serial,
  caId: 'ca1',
  notBefore: t0.toISOString(),
  notAfter: hours(24 * 365).toISOString(),
  fingerprint: `fp-${serial}`,
  publicKeyId,
})

const enrolled: DeviceEvent[] = [
  {
    type: 'DeviceEnrolled',
    data: {
      deviceId: 'toy-1',
      enrolledAt: t0.toISOString(),
      keyGeneratedByKennel: false,
      claimCodeHash: '$argon2id$x',
      claimCodeExpiresAt: hours(720).toISOString(),
    },
  },
  { type: 'CertificateIssued', data: { deviceId: 'toy-1', ...cert('a1') } },
]
const enroll = (now = t0): DeviceCommand => ({
  type: 'EnrollDevice',
  deviceId: 'toy-1',
  now,
  keyGeneratedByKennel: false,
  claimCodeHash: '$argon2id$x',
  claimCodeExpiresAt: hours(720),
  certificate: cert('a1'),
})

const given = (events: DeviceEvent[]) => givenEvents(deviceDecider, events)

t.test('enrolling a new id records the enrolment and its first certificate', async (t) => {
  given([]).when(enroll()).then(t, enrolled)
})

t.test('enrolling an enrolled id is refused as a duplicate', async (t) => {
  given(enrolled).when(enroll()).refused(t, 'KENNEL_ERR_DEVICE_EXISTS')
})

t.test('a revoked id cannot be enrolled again', async (t) => {
  given([
    ...enrolled,
    {
      type: 'DeviceRevoked',
      data: { deviceId: 'toy-1', reason: 'stolen', revokedAt: t0.toISOString(), serials: ['a1'] },
    },
  ])
    .when(enroll(hours(1)))
    .refused(t, 'KENNEL_ERR_DEVICE_REVOKED')
})

t.test(
  'renewing with the current certificate issues a new one and supersedes the old after the grace period',
  async (t) => {
    given(enrolled)
      .when({
        type: 'RenewCertificate',
        presentedSerial: 'a1',
        now: hours(10),
        graceHours: 24,
        certificate: cert('b2'),
      })
      .then(t, [
        { type: 'CertificateIssued', data: { deviceId: 'toy-1', ...cert('b2') } },
        {
          type: 'CertificateRenewed',
          data: {
            deviceId: 'toy-1',
            serial: 'b2',
            previousSerial: 'a1',
            renewedAt: hours(10).toISOString(),
            previousValidUntil: hours(34).toISOString(),
          },
        },
      ])
  },
)

t.test(
  'renewal is refused for an unknown device, a revoked, superseded, unknown or expired certificate, and a revoked key',
  async (t) => {
    const renew = (presentedSerial: string, now = hours(1), c = cert('b2')): DeviceCommand => ({
      type: 'RenewCertificate',
      presentedSerial,
      now,
      graceHours: 24,
      certificate: c,
    })
    given([]).when(renew('a1')).refused(t, 'KENNEL_ERR_DEVICE_UNKNOWN')
    given(enrolled).when(renew('ff')).refused(t, 'KENNEL_ERR_CERT_UNKNOWN')
    given([
      ...enrolled,
      {
        type: 'CertificateRevoked',
        data: { deviceId: 'toy-1', serial: 'a1', reason: 'x', revokedAt: t0.toISOString() },
      },
    ])
      .when(renew('a1'))
      .refused(t, 'KENNEL_ERR_CERT_REVOKED')
    const renewed: DeviceEvent[] = [
      ...enrolled,
      { type: 'CertificateIssued', data: { deviceId: 'toy-1', ...cert('b2') } },
      {
        type: 'CertificateRenewed',
        data: {
          deviceId: 'toy-1',
          serial: 'b2',
          previousSerial: 'a1',
          renewedAt: t0.toISOString(),
          previousValidUntil: hours(24).toISOString(),
        },
      },
    ]
    given(renewed)
      .when(renew('a1', hours(1), cert('c3')))
      .refused(t, 'KENNEL_ERR_CERT_INVALID')
    given(enrolled)
      .when(renew('a1', hours(24 * 366)))
      .refused(t, 'KENNEL_ERR_CERT_INVALID')
    const revokedKey: DeviceEvent[] = [
      ...renewed,
      {
        type: 'CertificateRevoked',
        data: { deviceId: 'toy-1', serial: 'a1', reason: 'leaked', revokedAt: t0.toISOString() },
      },
    ]
    given(revokedKey)
      .when(renew('b2', hours(1), cert('c3', 'pk-a1')))
      .refused(t, 'KENNEL_ERR_CERT_REVOKED')
    given([
      ...enrolled,
      { type: 'DeviceRevoked', data: { deviceId: 'toy-1', reason: 'x', revokedAt: t0.toISOString(), serials: ['a1'] } },
    ])
      .when(renew('a1'))
      .refused(t, 'KENNEL_ERR_DEVICE_REVOKED')
  },
)

t.test('revoking a device revokes every certificate not yet revoked, once', async (t) => {
  const withRevokedCert: DeviceEvent[] = [
    ...enrolled,
    { type: 'CertificateIssued', data: { deviceId: 'toy-1', ...cert('b2') } },
    { type: 'CertificateRevoked', data: { deviceId: 'toy-1', serial: 'a1', reason: 'x', revokedAt: t0.toISOString() } },
  ]
  given(withRevokedCert)
    .when({ type: 'RevokeDevice', reason: 'stolen', now: hours(2) })
    .then(t, [
      {
        type: 'DeviceRevoked',
        data: { deviceId: 'toy-1', reason: 'stolen', revokedAt: hours(2).toISOString(), serials: ['b2'] },
      },
    ])
  given([]).when({ type: 'RevokeDevice', reason: 'x', now: t0 }).refused(t, 'KENNEL_ERR_DEVICE_UNKNOWN')
  const revoked = [
    ...enrolled,
    {
      type: 'DeviceRevoked',
      data: { deviceId: 'toy-1', reason: 'x', revokedAt: t0.toISOString(), serials: ['a1'] },
    } as DeviceEvent,
  ]
  given(revoked).when({ type: 'RevokeDevice', reason: 'again', now: t0 }).refused(t, 'KENNEL_ERR_DEVICE_REVOKED')
})

t.test('revoking a certificate: once, and only one of the device', async (t) => {
  given(enrolled)
    .when({ type: 'RevokeCertificate', serial: 'a1', reason: 'leaked', now: hours(1) })
    .then(t, [
      {
        type: 'CertificateRevoked',
        data: { deviceId: 'toy-1', serial: 'a1', reason: 'leaked', revokedAt: hours(1).toISOString() },
      },
    ])
  given(enrolled)
    .when({ type: 'RevokeCertificate', serial: 'b2', reason: 'x', now: t0 })
    .refused(t, 'KENNEL_ERR_CERT_UNKNOWN')
  given([
    ...enrolled,
    { type: 'CertificateRevoked', data: { deviceId: 'toy-1', serial: 'a1', reason: 'x', revokedAt: t0.toISOString() } },
  ])
    .when({ type: 'RevokeCertificate', serial: 'a1', reason: 'x', now: t0 })
    .refused(t, 'KENNEL_ERR_CERT_REVOKED')
})

t.test('a claim pairs the device once, before expiry, with the right secret, unless revoked', async (t) => {
  const claim = (now = hours(1), secretMatches = true): DeviceCommand => ({
    type: 'ClaimDevice',
    householdId: 'h1',
    secretMatches,
    now,
  })
  given(enrolled)
    .when(claim())
    .then(t, [
      { type: 'DeviceClaimed', data: { deviceId: 'toy-1', householdId: 'h1', claimedAt: hours(1).toISOString() } },
    ])
  given(enrolled)
    .when(claim(hours(1), false))
    .refused(t, 'KENNEL_ERR_CLAIM_CODE_INVALID')
  given(enrolled)
    .when(claim(hours(720)))
    .refused(t, 'KENNEL_ERR_CLAIM_CODE_EXPIRED')
  given([
    ...enrolled,
    { type: 'DeviceClaimed', data: { deviceId: 'toy-1', householdId: 'h0', claimedAt: t0.toISOString() } },
  ])
    .when(claim())
    .refused(t, 'KENNEL_ERR_CLAIM_CODE_USED')
  given([
    ...enrolled,
    { type: 'DeviceRevoked', data: { deviceId: 'toy-1', reason: 'x', revokedAt: t0.toISOString(), serials: ['a1'] } },
  ])
    .when(claim())
    .refused(t, 'KENNEL_ERR_DEVICE_REVOKED')
  given([]).when(claim()).refused(t, 'KENNEL_ERR_CLAIM_CODE_INVALID')
})

t.test('a wrong secret is refused as invalid even for a claimed or revoked device (no state leaks)', async (t) => {
  const wrong: DeviceCommand = { type: 'ClaimDevice', householdId: 'h1', secretMatches: false, now: hours(1) }
  given([
    ...enrolled,
    { type: 'DeviceClaimed', data: { deviceId: 'toy-1', householdId: 'h0', claimedAt: t0.toISOString() } },
  ])
    .when(wrong)
    .refused(t, 'KENNEL_ERR_CLAIM_CODE_INVALID')
  given([
    ...enrolled,
    { type: 'DeviceRevoked', data: { deviceId: 'toy-1', reason: 'x', revokedAt: t0.toISOString(), serials: ['a1'] } },
  ])
    .when(wrong)
    .refused(t, 'KENNEL_ERR_CLAIM_CODE_INVALID')
})

t.test('evolve folds the history into the state decide needs', async (t) => {
  const s = foldDevice([
    ...enrolled,
    { type: 'CertificateIssued', data: { deviceId: 'toy-1', ...cert('b2') } },
    {
      type: 'CertificateRenewed',
      data: {
        deviceId: 'toy-1',
        serial: 'b2',
        previousSerial: 'a1',
        renewedAt: t0.toISOString(),
        previousValidUntil: hours(24).toISOString(),
      },
    },
  ])
  t.equal(s.status, 'active')
  t.equal(s.currentSerial, 'b2')
  t.equal(s.certificates.a1?.supersededAt, hours(24).toISOString())
  t.same(
    evolve(initialDeviceState, { type: 'DeviceClaimed', data: { deviceId: 'x', householdId: 'h', claimedAt: '' } })
      .householdId,
    'h',
  )
})
