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
  const runner = await startProjectionRunner({ store, readModels, projections: [createAuditProjection({ signer: keys.signer, headEveryEvents: 25, headEverySeconds: 86400 })] })
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
  refused(t, () => checkProof(alter((p) => (p.event.data.size += 1)), verifier), 'an edited event')
  refused(t, () => checkProof(alter((p) => (p.event.position += 1)), verifier), 'another position')
  refused(t, () => checkProof(alter((p) => (p.leafIndex += 1)), verifier), 'another leaf index')
  refused(t, () => checkProof(alter((p) => (p.path[0] = p.path[1])), verifier), 'an altered path')
  refused(t, () => checkProof(alter((p) => (p.head.root = p.path[0])), verifier), 'an altered head root')
  refused(t, () => checkProof(alter((p) => (p.head.size += 1)), verifier), 'an altered head size')
  refused(t, () => checkProof(proof, testKeys().verifier), 'another public key')

  const consistency = JSON.parse(JSON.stringify(await proveConsistency(deps, 25)))
  t.equal(consistency.first.size, 25)
  t.equal(consistency.second.size, proof.treeSize)
  checkProof(consistency, verifier)
  t.pass('the consistency proof 25 -> latest verifies offline')
  refused(t, () => checkProof({ ...consistency, path: consistency.path.slice(1) }, verifier), 'a shortened consistency path')
  refused(t, () => checkProof({ ...consistency, first: { ...consistency.first, root: consistency.path[0] } }, verifier), 'a forged first head')
  t.rejects(proveInclusion(deps, '00000000-0000-4000-8000-000000000000'), { code: 'KENNEL_ERR_NOT_FOUND' })
})
