import t, { type Test } from 'tap'
import { type DeviceCa, rolloverDevelopmentCa } from '../../devices/ca.ts'
import { followDeviceCa, FollowedDeviceCa } from '../../devices/ca-follower.ts'
import { recordCa } from '../../devices/device-store.ts'
import { createTestPki } from '../helpers/pki.ts'

// R18: a running server follows `ca-` events and loads the CA again when one it does not trust
// is recorded; an automatic reload only ever adds trust.

async function setup(t: Test) {
  const pki = await createTestPki(t)
  const ca = new FollowedDeviceCa(pki.ca)
  const loads: Array<() => Promise<DeviceCa>> = []
  let loadCalls = 0
  const changes: DeviceCa[] = []
  const logged: Array<{ level: string; msg: string }> = []
  const waiters: Array<() => void> = []
  const log = (level: string) => (_obj: unknown, msg?: string) => {
    logged.push({ level, msg: msg ?? '' })
    for (const w of waiters.splice(0)) w()
  }
  const follower = followDeviceCa({
    store: pki.store,
    after: await pki.store.headPosition(),
    ca,
    load: () => (loadCalls++, loads.shift()!()),
    onChange: async (next) => void changes.push(next),
    log: { info: log('info'), warn: log('warn'), error: log('error') } as never,
  })
  t.teardown(() => follower.stop())
  await follower.ready
  /** resolves at the follower's next log line about a recorded CA */
  const nextLog = () =>
    new Promise<{ level: string; msg: string }>((resolve) => waiters.push(() => resolve(logged.at(-1)!)))
  return { pki, ca, loads, changes, nextLog, loadCalls: () => loadCalls }
}

t.test('a CA recorded by another process is loaded and handed over; the previous ones stay trusted', async (t) => {
  const { pki, ca, loads, changes, nextLog } = await setup(t)
  const next = await rolloverDevelopmentCa(pki.config)
  loads.push(async () => next)
  const logged = nextLog()
  await recordCa(pki.store, next, 'cli:ops')
  t.match(await logged, { level: 'info', msg: /rollover picked up/ })
  t.equal(ca.issuer.info.caId, next.issuer.info.caId, 'enrolment and renewal now use the new CA')
  t.same(
    changes.map((c) => c.issuer.info.caId),
    [next.issuer.info.caId],
    'the listeners are told once',
  )
  t.ok(ca.trustedPem.includes(pki.ca.issuer.certificate.toString('pem')), 'the old CA stays trusted')
})

t.test('a CA already trusted is not loaded again', async (t) => {
  const { pki, loads, changes, nextLog, loadCalls } = await setup(t)
  await recordCa(pki.store, pki.ca, 'cli:ops')
  const probe = await rolloverDevelopmentCa(pki.config) // a later event: the first one has been passed over when it is handled
  loads.push(async () => probe)
  const logged = nextLog()
  await recordCa(pki.store, probe, 'cli:ops')
  t.match(await logged, { level: 'info' })
  t.equal(loadCalls(), 1, 'loaded for the new CA only')
  t.same(
    changes.map((c) => c.issuer.info.caId),
    [probe.issuer.info.caId],
  )
})

t.test('files that drop a trusted CA, or a CA that cannot be loaded, change nothing', async (t) => {
  const { pki, ca, loads, changes, nextLog } = await setup(t)
  const next = await rolloverDevelopmentCa(pki.config)
  loads.push(async () => ({ ...next, trustedPem: `${next.issuer.certificate.toString('pem')}\n` }))
  let logged = nextLog()
  await recordCa(pki.store, next, 'cli:ops')
  t.match(await logged, { level: 'error', msg: /no longer hold CAs this process trusts/ })
  t.equal(ca.issuer.info.caId, pki.ca.issuer.info.caId, 'still the CA it started with')
  t.same(changes, [])

  const another = await rolloverDevelopmentCa(pki.config)
  loads.push(async () => Promise.reject(new Error('unreadable key')))
  logged = nextLog()
  await recordCa(pki.store, another, 'cli:ops')
  t.match(await logged, { level: 'error', msg: /could not be loaded/ })
  t.equal(ca.issuer.info.caId, pki.ca.issuer.info.caId)
  t.same(changes, [])
})
