import t from 'tap'
import { claimDevice } from '../../devices/claim.ts'
import { revokeDevice } from '../../devices/revoke.ts'
import { deviceView, readRegistry } from '../../devices/registry.ts'
import { createTestPki } from '../helpers/pki.ts'

const day = 86_400_000

t.test('a claim code pairs the toy with a household once; it is stored only as an argon2id hash', async (t) => {
  const pki = await createTestPki(t)
  const toy = await pki.enroll('toy-1')
  t.match(toy.claimCode, /^toy-1\.[a-z2-9]{32,}$/, 'device id + at least 160 bits of secret')
  const enrolled = (await pki.store.readStream('device-toy-1'))[0]!
  const stored = JSON.stringify(await pki.store.readAll())
  t.notOk(stored.includes(toy.claimCode.split('.')[1]!), 'the secret is in no event')
  t.match((enrolled.data as { claimCodeHash: string }).claimCodeHash, /^\$argon2id\$/)
  t.same(
    await claimDevice(
      pki.deps({ actor: 'account:a1', sourceIp: '203.0.113.9' }),
      toy.claimCode.toUpperCase(),
      'house-1',
    ),
    { deviceId: 'toy-1' },
  )
  const claimed = (await pki.store.readStream('device-toy-1')).at(-1)!
  t.equal(claimed.type, 'DeviceClaimed')
  t.same(claimed.metadata, { actor: 'account:a1', sourceIp: '203.0.113.9' })
  t.equal(deviceView(await readRegistry(pki.store), 'toy-1')?.householdId, 'house-1')
})

t.test(
  'wrong, malformed, expired, reused and revoked codes: each its own error, ClaimCodeRejected recorded, device untouched',
  async (t) => {
    const pki = await createTestPki(t, { KENNEL_CLAIM_CODE_TTL_HOURS: '1' })
    const toy = await pki.enroll('toy-1')
    const used = await pki.enroll('toy-used')
    await claimDevice(pki.deps(), used.claimCode, 'house-0')
    const gone = await pki.enroll('toy-gone')
    await revokeDevice(pki.deps(), 'toy-gone', 'stolen')
    const secret = toy.claimCode.split('.')[1]!
    const flipped = `toy-1.${secret.slice(0, -1)}${secret.endsWith('a') ? 'b' : 'a'}`
    const cases: Array<[string, string, Date | undefined, string, string]> = [
      ['wrong secret', flipped, undefined, 'KENNEL_ERR_CLAIM_CODE_INVALID', 'wrong-secret'],
      [
        'another device’s secret',
        `toy-1.${used.claimCode.split('.')[1]}`,
        undefined,
        'KENNEL_ERR_CLAIM_CODE_INVALID',
        'wrong-secret',
      ],
      ['unknown device', `toy-404.${secret}`, undefined, 'KENNEL_ERR_CLAIM_CODE_INVALID', 'unknown-device'],
      ['malformed', "toy-1'; drop", undefined, 'KENNEL_ERR_CLAIM_CODE_INVALID', 'malformed'],
      ['expired', toy.claimCode, new Date(Date.now() + 2 * 3_600_000), 'KENNEL_ERR_CLAIM_CODE_EXPIRED', 'expired'],
      ['reused', used.claimCode, undefined, 'KENNEL_ERR_CLAIM_CODE_USED', 'used'],
      ['revoked device', gone.claimCode, undefined, 'KENNEL_ERR_DEVICE_REVOKED', 'device-revoked'],
    ]
    for (const [name, code, now, error, reason] of cases) {
      const deviceStreams = JSON.stringify(await pki.store.readAll({ filter: { streamPrefixes: ['device-'] } }))
      await t.rejects(
        claimDevice(pki.deps({ now, actor: 'account:mallory', sourceIp: '198.51.100.7' }), code, 'house-9'),
        { code: error },
        name,
      )
      t.equal(
        JSON.stringify(await pki.store.readAll({ filter: { streamPrefixes: ['device-'] } })),
        deviceStreams,
        `${name}: no device changed`,
      )
      const evidence = (await pki.store.readAll({ direction: 'backwards', maxCount: 1 }))[0]!
      t.equal(evidence.type, 'ClaimCodeRejected', `${name}: recorded`)
      t.match(evidence.stream, /^security-\d{4}-\d{2}-\d{2}$/)
      t.match(evidence.data, { reason, householdId: 'house-9' })
      t.same(evidence.metadata, { actor: 'account:mallory', sourceIp: '198.51.100.7' })
      t.notOk(JSON.stringify(evidence).includes(secret), 'the code is not in the evidence')
    }
    await t.rejects(
      claimDevice(pki.deps(), toy.claimCode, '../h'),
      { code: 'KENNEL_ERR_VALIDATION' },
      'bad household id',
    )
    t.same(
      await claimDevice(pki.deps({ now: new Date(Date.now() + day / 48) }), toy.claimCode, 'house-1'),
      { deviceId: 'toy-1' },
      'the right code still works after all that',
    )
  },
)

t.test('two concurrent claims of one code: exactly one wins', async (t) => {
  const pki = await createTestPki(t)
  const toy = await pki.enroll('toy-1')
  const results = await Promise.allSettled([
    claimDevice(pki.deps(), toy.claimCode, 'house-a'),
    claimDevice(pki.deps(), toy.claimCode, 'house-b'),
  ])
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
  t.match(
    results.find((r) => r.status === 'rejected'),
    { reason: { code: 'KENNEL_ERR_CLAIM_CODE_USED' } },
  )
})
