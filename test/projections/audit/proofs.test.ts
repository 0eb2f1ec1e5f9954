import t, { type Test } from 'tap'
import { isKennelError } from '../../../infra/errors.ts'
import { verifierFromPem } from '../../../projections/audit/keys.ts'
import { createAuditProjection } from '../../../projections/audit/projection.ts'
import { checkProof, proveConsistency, proveInclusion } from '../../../projections/audit/proofs.ts'
import { startProjectionRunner } from '../../../projections/runner.ts'
import { appendAll, sandbox, testKeys, traffic } from '../helpers.ts'

const refused = (t: Test, fn: () => void, why: string): void => {
  try {
    fn()
    t.fail(`${why}: accepted`)
  } catch (err) {
    t.ok(isKennelError(err, 'KENNEL_ERR_PROOF_INVALID'), `${why}: refused (${(err as Error).message})`)
  }
}

t.test('inclusion and consistency proofs verify with only the public key and fail when altered', async (t) => {
  const { store, readModels } = await sandbox(t)
  const keys = testKeys()
  await appendAll(store, traffic(97))
  const runner = await startProjectionRunner({
    store,
    readModels,
    projections: [createAuditProjection({ signer: keys.signer, headEveryEvents: 25, headEverySeconds: 86400 })],
  })
  await runner.caughtUp
  await runner.waitFor(await store.headPosition())
  await runner.stop()
  const verifier = verifierFromPem(keys.publicKeyPem)
  const deps = { store, readModels, verifiers: [verifier] }
  const [event] = await store.readAll({ after: 41, maxCount: 1 })
  const proof = JSON.parse(JSON.stringify(await proveInclusion(deps, event!.id)))
  t.equal(proof.leafIndex, 41)
  t.ok(proof.treeSize >= 75 && proof.treeSize % 25 === 0, `against the latest signed head (${proof.treeSize})`)
  checkProof(proof, verifier)
  t.pass('the inclusion proof verifies offline')

  const alter = (f: (p: typeof proof) => void) => {
    const copy = structuredClone(proof)
    f(copy)
    return copy
  }
  refused(
    t,
    () =>
      checkProof(
        alter((p) => (p.event.data.size += 1)),
        verifier,
      ),
    'an edited event',
  )
  refused(
    t,
    () =>
      checkProof(
        alter((p) => (p.event.position += 1)),
        verifier,
      ),
    'another position',
  )
  refused(
    t,
    () =>
      checkProof(
        alter((p) => (p.leafIndex += 1)),
        verifier,
      ),
    'another leaf index',
  )
  refused(
    t,
    () =>
      checkProof(
        alter((p) => (p.path[0] = p.path[1])),
        verifier,
      ),
    'an altered path',
  )
  refused(
    t,
    () =>
      checkProof(
        alter((p) => (p.head.root = p.path[0])),
        verifier,
      ),
    'an altered head root',
  )
  refused(
    t,
    () =>
      checkProof(
        alter((p) => (p.head.size += 1)),
        verifier,
      ),
    'an altered head size',
  )
  refused(t, () => checkProof(proof, testKeys().verifier), 'another public key')

  const consistency = JSON.parse(JSON.stringify(await proveConsistency(deps, 25)))
  t.equal(consistency.first.size, 25)
  t.equal(consistency.second.size, proof.treeSize)
  checkProof(consistency, verifier)
  t.pass('the consistency proof 25 -> latest verifies offline')
  refused(
    t,
    () => checkProof({ ...consistency, path: consistency.path.slice(1) }, verifier),
    'a shortened consistency path',
  )
  refused(
    t,
    () => checkProof({ ...consistency, first: { ...consistency.first, root: consistency.path[0] } }, verifier),
    'a forged first head',
  )
  t.rejects(proveInclusion(deps, '00000000-0000-4000-8000-000000000000'), { code: 'KENNEL_ERR_NOT_FOUND' })
})

async function signedProofs(t: Test) {
  const { store, readModels } = await sandbox(t)
  const keys = testKeys()
  await appendAll(store, traffic(50))
  const runner = await startProjectionRunner({
    store,
    readModels,
    projections: [createAuditProjection({ signer: keys.signer, headEveryEvents: 7, headEverySeconds: 86400 })],
  })
  await runner.caughtUp
  await runner.waitFor(await store.headPosition())
  await runner.stop()
  const deps = { store, readModels, verifiers: [keys.verifier] }
  const [event] = await store.readAll({ after: 19, maxCount: 1 })
  const inclusion = JSON.parse(JSON.stringify(await proveInclusion(deps, event!.id)))
  const consistency = JSON.parse(JSON.stringify(await proveConsistency(deps, 14)))
  checkProof(inclusion, keys.verifier)
  checkProof(consistency, keys.verifier)
  t.pass('the unaltered proofs verify')
  return { inclusion, consistency, verifier: keys.verifier }
}

t.test('a leaf index that is the real one minus a power of two is refused, not read as the same leaf', async (t) => {
  const { inclusion, verifier } = await signedProofs(t)
  t.equal(inclusion.leafIndex, 19)
  for (const k of [5, 6, 7, 8, 16, 31, 32, 33, 52]) {
    refused(
      t,
      () => checkProof({ ...inclusion, leafIndex: inclusion.leafIndex - 2 ** k }, verifier),
      `leaf index 19 - 2^${k}`,
    )
  }
  refused(
    t,
    () => checkProof({ ...inclusion, leafIndex: inclusion.leafIndex + 2 ** 53 }, verifier),
    'a leaf index beyond the safe integers',
  )
  refused(t, () => checkProof({ ...inclusion, leafIndex: 19.5 }, verifier), 'a fractional leaf index')
  refused(t, () => checkProof({ ...inclusion, leafIndex: '19' }, verifier), 'a leaf index as text')
})

t.test('a proof, event or head with a field kennel audit prove does not write is refused', async (t) => {
  const { inclusion, consistency, verifier } = await signedProofs(t)
  refused(
    t,
    () => checkProof({ ...inclusion, event: { ...inclusion.event, extra: 1 } }, verifier),
    'an extra event field',
  )
  refused(
    t,
    () =>
      checkProof(JSON.parse(JSON.stringify(inclusion).replace('"event":{', '"event":{"__proto__":{"x":1},')), verifier),
    'a __proto__ field parsed from JSON',
  )
  refused(t, () => checkProof({ ...inclusion, extra: 1 }, verifier), 'an extra proof field')
  refused(t, () => checkProof({ ...inclusion, head: { ...inclusion.head, extra: 1 } }, verifier), 'an extra head field')
  refused(t, () => checkProof({ ...consistency, extra: 1 }, verifier), 'an extra consistency proof field')
  refused(
    t,
    () => checkProof({ ...consistency, first: { ...consistency.first, extra: 1 } }, verifier),
    'an extra field in the first head',
  )
  refused(
    t,
    () => checkProof({ ...consistency, second: { ...consistency.second, extra: 1 } }, verifier),
    'an extra field in the second head',
  )
  refused(
    t,
    () => checkProof({ ...consistency, event: inclusion.event }, verifier),
    'a consistency proof carrying an event',
  )
  const { metadata: _, ...withoutMetadata } = inclusion.event
  refused(t, () => checkProof({ ...inclusion, event: withoutMetadata }, verifier), 'an event without its metadata')
})

t.test('a consistency proof between heads in the wrong order is refused', async (t) => {
  const { consistency, verifier } = await signedProofs(t)
  t.ok(consistency.first.size < consistency.second.size)
  refused(
    t,
    () => checkProof({ ...consistency, first: consistency.second, second: consistency.first }, verifier),
    'first larger than second',
  )
})
