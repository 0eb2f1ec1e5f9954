import type { EmailProtector } from '../../../api/accounts/personal-data.ts'
import type { EventStore, NewEvent } from '../../../infra/eventstore/port.ts'

// A stolen toy, as the contexts record it (docs/EVENTS.md): alice (owner) and bob (member) hold
// household h1, carol holds h2. Toy d1 of h1 (certificate ab01) is stolen: the thief subscribes,
// publishes (once on a topic it may not use), gets download URLs for r1 and r2 and uses r1's; the
// toy is revoked; then r2's URL, still valid, is used. Carol's toy d3 goes on as usual.

/** presigned URLs in the scenario expire five minutes after the test runs */
export const later = new Date(Date.now() + 300_000).toISOString()

export const put = (
  store: EventStore,
  stream: string,
  type: string,
  data: Record<string, unknown>,
  metadata: Record<string, unknown> = {},
) => store.append(stream, [{ type, data, metadata } satisfies NewEvent])

/** the addresses the holders signed up with, as typed */
export const SIGN_UP = { alice: 'Alice.Parent@Example.org', bob: '+bob@example.org', carol: 'carol@example.org' }

export async function stolenToy(store: EventStore, emails: EmailProtector): Promise<void> {
  // sign-ups as api/accounts/routes.ts writes them: an HMAC lookup and the address sealed with the person's key
  const signUp = async (accountId: string, email: string) =>
    put(
      store,
      `account-${accountId}`,
      'AccountCreated',
      {
        accountId,
        emailHash: emails.hash(email),
        emailSealed: await emails.seal(accountId, email),
        passwordHash: '$argon2id$x',
        createdAt: new Date().toISOString(),
      },
      { actor: 'anonymous' },
    )
  for (const [accountId, email] of Object.entries(SIGN_UP)) await signUp(accountId, email)
  await put(
    store,
    'household-h1',
    'HouseholdCreated',
    { householdId: 'h1', ownerAccountId: 'alice' },
    { actor: 'account:alice' },
  )
  await put(store, 'household-h1', 'MemberAdded', { householdId: 'h1', accountId: 'bob' }, { actor: 'account:alice' })
  await put(
    store,
    'household-h2',
    'HouseholdCreated',
    { householdId: 'h2', ownerAccountId: 'carol' },
    { actor: 'account:carol' },
  )
  await put(store, 'device-d1', 'CertificateIssued', { deviceId: 'd1', serial: 'ab01' }, { actor: 'cli:ops' })
  await put(store, 'device-d1', 'DeviceClaimed', { deviceId: 'd1', householdId: 'h1' }, { actor: 'account:alice' })
  await put(store, 'device-d3', 'DeviceClaimed', { deviceId: 'd3', householdId: 'h2' }, { actor: 'account:carol' })
  const recording = (recordingId: string, householdId: string, deviceId: string) => ({
    recordingId,
    householdId,
    deviceId,
    direction: 'to-device',
    contentType: 'audio/ogg',
    bytes: 5,
    objectKey: `rec-${recordingId.padEnd(40, '0')}`,
    createdAt: new Date().toISOString(),
  })
  await put(store, 'recording-r1', 'RecordingCreated', recording('r1', 'h1', 'd1'), { actor: 'account:alice' })
  await put(store, 'recording-r2', 'RecordingCreated', recording('r2', 'h1', 'd1'), { actor: 'account:bob' })
  await put(store, 'recording-r3', 'RecordingCreated', recording('r3', 'h2', 'd3'), { actor: 'account:carol' })
  // the stolen toy credential at work, as the broker and the API record it
  const thief = { actor: 'device:d1', credential: 'cert:ab01', sourceIp: '203.0.113.9' }
  await put(store, 'mqtt-d1', 'DeviceConnected', { deviceId: 'd1', serial: 'ab01', ip: '203.0.113.9' }, thief)
  await put(store, 'mqtt-d1', 'SubscriptionGranted', { deviceId: 'd1', filter: 'toys/d1/inbox/#', qos: 1 }, thief)
  await put(store, 'mqtt-d1', 'PublishAccepted', { deviceId: 'd1', topic: 'toys/d1/status', qos: 1, bytes: 10 }, thief)
  await put(store, 'mqtt-d1', 'PublishAccepted', { deviceId: 'd1', topic: 'toys/d1/status', qos: 1, bytes: 12 }, thief)
  await put(
    store,
    'mqtt-d1',
    'PublishDenied',
    { deviceId: 'd1', topic: 'toys/d2/x,"y"', qos: 0, bytes: 1, reason: 'not-own-topic' },
    thief,
  )
  await put(
    store,
    'recording-r1',
    'DownloadUrlIssued',
    { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u1' },
    thief,
  )
  await put(
    store,
    'recording-r1',
    'RecordingDownloaded',
    { recordingId: 'r1', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u1' },
    { actor: 'anonymous', sourceIp: '203.0.113.9' },
  )
  await put(
    store,
    'recording-r2',
    'DownloadUrlIssued',
    { recordingId: 'r2', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u2' },
    thief,
  )
  await put(
    store,
    'device-d1',
    'DeviceRevoked',
    { deviceId: 'd1', reason: 'stolen', serials: ['ab01'] },
    { actor: 'account:ops' },
  )
  // the URL outlives the revocation of the credential that obtained it
  await put(
    store,
    'recording-r2',
    'RecordingDownloaded',
    { recordingId: 'r2', householdId: 'h1', deviceId: 'd1', until: later, urlId: 'u2' },
    { actor: 'anonymous', sourceIp: '203.0.113.9' },
  )
  await put(
    store,
    'mqtt-d3',
    'PublishAccepted',
    { deviceId: 'd3', topic: 'toys/d3/status', qos: 1, bytes: 10 },
    { actor: 'device:d3', credential: 'cert:cd03' },
  )
}
