import { KennelError } from '../../infra/errors.ts'
import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import type { ReadModelStore } from '../readmodels/port.ts'
import type { TreeHead } from './events.ts'
import { headSignatureValid, latestHead, readHeads } from './heads.ts'
import type { AuditVerifier } from './keys.ts'
import { consistencyPath, eventLeaf, inclusionPath, verifyConsistency, verifyInclusion } from './merkle.ts'
import { AUDIT_PROJECTION } from './projection.ts'

// Inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4) as self-contained JSON: a holder of
// the public key alone can check that an event is in the signed log, and that an older signed
// head is a prefix of a newer one, without access to kennel.

export interface InclusionProof {
  kind: 'kennel-inclusion-proof/v1'
  event: RecordedEvent
  leafIndex: number
  treeSize: number
  path: string[]
  head: TreeHead
}

export interface ConsistencyProof {
  kind: 'kennel-consistency-proof/v1'
  first: TreeHead
  second: TreeHead
  path: string[]
}

export type AuditProof = InclusionProof | ConsistencyProof

/** the recorded leaves 0..size-1, from the audit read model */
async function leavesUpTo(readModels: ReadModelStore, size: number): Promise<Buffer[]> {
  const leaves: Buffer[] = []
  let after = 0
  while (leaves.length < size) {
    const batch = await readModels.entries(AUDIT_PROJECTION, after, Math.min(10_000, size - leaves.length))
    if (batch.length === 0) break
    for (const e of batch) leaves.push(e.digest)
    after = batch[batch.length - 1]!.position
  }
  if (leaves.length < size) throw new KennelError('KENNEL_ERR_UNAVAILABLE', `the audit read model holds ${leaves.length} leaves, fewer than the head's ${size}; run the projections first`)
  return leaves
}

export interface ProveOptions {
  store: EventStore
  readModels: ReadModelStore
  verifiers: readonly AuditVerifier[]
}

export async function proveInclusion(o: ProveOptions, eventId: string): Promise<InclusionProof> {
  const id = eventId.toLowerCase()
  const position = await o.readModels.positionOf(AUDIT_PROJECTION, id)
  if (position === undefined) throw new KennelError('KENNEL_ERR_NOT_FOUND', `event ${eventId} is not in the audit log`)
  const [event] = await o.store.readAll({ after: position - 1, maxCount: 1 })
  const entry = await o.readModels.entryAt(AUDIT_PROJECTION, position)
  if (!event || event.id !== id || !entry) throw new KennelError('KENNEL_ERR_NOT_FOUND', `event ${eventId} is not in the store at position ${position}`)
  const latest = latestHead(await readHeads(o.store), o.verifiers)
  if (!latest || latest.head.size <= entry.ordinal) {
    throw new KennelError('KENNEL_ERR_UNAVAILABLE', `no signed tree head covers event ${eventId} yet (leaf ${entry.ordinal}); heads are signed every few events or seconds`)
  }
  const leaves = await leavesUpTo(o.readModels, latest.head.size)
  const path = inclusionPath(leaves, entry.ordinal, latest.head.size)
  return { kind: 'kennel-inclusion-proof/v1', event, leafIndex: entry.ordinal, treeSize: latest.head.size, path: path.map((b) => b.toString('hex')), head: latest.head }
}

/** consistency between the signed heads of sizes `from` and `to` (default: the latest) */
export async function proveConsistency(o: ProveOptions, from: number, to?: number): Promise<ConsistencyProof> {
  const heads = (await readHeads(o.store)).filter((h) => headSignatureValid(h.head, o.verifiers))
  const first = heads.find((h) => h.head.size === from)
  const second = to === undefined ? latestHead(heads, o.verifiers) : heads.find((h) => h.head.size === to)
  if (!first) throw new KennelError('KENNEL_ERR_NOT_FOUND', `no signed tree head of size ${from}`)
  if (!second) throw new KennelError('KENNEL_ERR_NOT_FOUND', `no signed tree head of size ${to}`)
  if (second.head.size < first.head.size) throw new KennelError('KENNEL_ERR_VALIDATION', `the second head (size ${second.head.size}) must not be smaller than the first (${first.head.size})`)
  const leaves = await leavesUpTo(o.readModels, second.head.size)
  const path = first.head.size === second.head.size ? [] : consistencyPath(leaves, first.head.size, second.head.size)
  return { kind: 'kennel-consistency-proof/v1', first: first.head, second: second.head, path: path.map((b) => b.toString('hex')) }
}

const HEX32 = /^[0-9a-f]{64}$/

/** Check a proof offline with the public key only; throws KENNEL_ERR_PROOF_INVALID naming why. */
export function checkProof(proof: unknown, verifier: AuditVerifier): void {
  const fail = (why: string): never => {
    throw new KennelError('KENNEL_ERR_PROOF_INVALID', `proof invalid: ${why}`)
  }
  const p = proof as {
    kind?: string
    path?: unknown[]
    head?: TreeHead
    first?: TreeHead
    second?: TreeHead
    event?: RecordedEvent
    leafIndex?: number
    treeSize?: number
  }
  if (!p || typeof p !== 'object' || !Array.isArray(p.path) || !p.path.every((h) => typeof h === 'string' && HEX32.test(h))) fail('not a kennel proof (path must be an array of hex SHA-256 hashes)')
  const path = (p.path as string[]).map((h) => Buffer.from(h, 'hex'))
  const checkHead = (h: TreeHead | undefined, name: string): TreeHead => {
    if (!h || typeof h.root !== 'string' || !HEX32.test(h.root) || !Number.isSafeInteger(h.size)) return fail(`${name} head is malformed`)
    if (!headSignatureValid(h, [verifier])) return fail(`${name} head (size ${h.size}) is not signed by this public key`)
    return h
  }
  if (p.kind === 'kennel-inclusion-proof/v1') {
    const head = checkHead(p.head, 'the')
    if (!p.event || typeof p.event !== 'object') fail('no event')
    if (p.treeSize !== head.size || !Number.isSafeInteger(p.leafIndex)) fail('tree size or leaf index does not match the head')
    if (!verifyInclusion(eventLeaf(p.event!), p.leafIndex!, head.size, path, Buffer.from(head.root, 'hex'))) fail(`event ${p.event!.id} is not at leaf ${p.leafIndex} of the signed tree of size ${head.size}`)
    return
  }
  if (p.kind === 'kennel-consistency-proof/v1') {
    const first = checkHead(p.first, 'first')
    const second = checkHead(p.second, 'second')
    if (!verifyConsistency(first.size, second.size, path, Buffer.from(first.root, 'hex'), Buffer.from(second.root, 'hex'))) fail(`the head of size ${first.size} is not a prefix of the head of size ${second.size}`)
    return
  }
  fail(`unknown proof kind ${JSON.stringify(p.kind)}`)
}
