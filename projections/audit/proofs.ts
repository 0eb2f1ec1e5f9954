import { KennelError } from '../../infra/errors.ts'
import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import type { EntryLookups } from '../readmodels/port.ts'
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
async function leavesUpTo(readModels: EntryLookups, size: number): Promise<Buffer[]> {
  const leaves: Buffer[] = []
  let after = 0
  while (leaves.length < size) {
    const batch = await readModels.entries(AUDIT_PROJECTION, after, Math.min(10_000, size - leaves.length))
    if (batch.length === 0) break
    for (const e of batch) leaves.push(e.digest)
    after = batch[batch.length - 1]!.position
  }
  if (leaves.length < size)
    throw new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `the audit read model holds ${leaves.length} leaves, fewer than the head's ${size}; run the projections first`,
    )
  return leaves
}

export interface ProveOptions {
  store: EventStore
  readModels: EntryLookups
  verifiers: readonly AuditVerifier[]
}

export async function proveInclusion(o: ProveOptions, eventId: string): Promise<InclusionProof> {
  const id = eventId.toLowerCase()
  const position = await o.readModels.positionOf(AUDIT_PROJECTION, id)
  if (position === undefined) throw new KennelError('KENNEL_ERR_NOT_FOUND', `event ${eventId} is not in the audit log`)
  const [event] = await o.store.readAll({ after: position - 1, maxCount: 1 })
  const entry = await o.readModels.entryAt(AUDIT_PROJECTION, position)
  if (!event || event.id !== id || !entry)
    throw new KennelError('KENNEL_ERR_NOT_FOUND', `event ${eventId} is not in the store at position ${position}`)
  const latest = latestHead(await readHeads(o.store), o.verifiers)
  if (!latest || latest.head.size <= entry.ordinal) {
    throw new KennelError(
      'KENNEL_ERR_UNAVAILABLE',
      `no signed tree head covers event ${eventId} yet (leaf ${entry.ordinal}); heads are signed every few events or seconds`,
    )
  }
  const leaves = await leavesUpTo(o.readModels, latest.head.size)
  const path = inclusionPath(leaves, entry.ordinal, latest.head.size)
  return {
    kind: 'kennel-inclusion-proof/v1',
    event,
    leafIndex: entry.ordinal,
    treeSize: latest.head.size,
    path: path.map((b) => b.toString('hex')),
    head: latest.head,
  }
}

/** consistency between the signed heads of sizes `from` and `to` (default: the latest) */
export async function proveConsistency(o: ProveOptions, from: number, to?: number): Promise<ConsistencyProof> {
  const heads = (await readHeads(o.store)).filter((h) => headSignatureValid(h.head, o.verifiers))
  const first = heads.find((h) => h.head.size === from)
  const second = to === undefined ? latestHead(heads, o.verifiers) : heads.find((h) => h.head.size === to)
  if (!first) throw new KennelError('KENNEL_ERR_NOT_FOUND', `no signed tree head of size ${from}`)
  if (!second) throw new KennelError('KENNEL_ERR_NOT_FOUND', `no signed tree head of size ${to}`)
  if (second.head.size < first.head.size)
    throw new KennelError(
      'KENNEL_ERR_VALIDATION',
      `the second head (size ${second.head.size}) must not be smaller than the first (${first.head.size})`,
    )
  const leaves = await leavesUpTo(o.readModels, second.head.size)
  const path = first.head.size === second.head.size ? [] : consistencyPath(leaves, first.head.size, second.head.size)
  return {
    kind: 'kennel-consistency-proof/v1',
    first: first.head,
    second: second.head,
    path: path.map((b) => b.toString('hex')),
  }
}

const HEX32 = /^[0-9a-f]{64}$/

// The fields `kennel audit prove` and `consistency` write, and nothing else: the leaf hashes only
// the event's own fields and the signature only the head's, so anything extra would ride along
// unverified.
const INCLUSION_FIELDS = ['kind', 'event', 'leafIndex', 'treeSize', 'path', 'head']
const CONSISTENCY_FIELDS = ['kind', 'first', 'second', 'path']
const EVENT_FIELDS = ['id', 'type', 'stream', 'revision', 'position', 'time', 'data', 'metadata'] satisfies Array<
  keyof RecordedEvent
>
const HEAD_FIELDS = ['size', 'root', 'time', 'keyId', 'signature'] satisfies Array<keyof TreeHead>

/** the fields of o that are missing from, or not in, the expected list */
function fieldMismatch(o: object, expected: readonly string[]): string | undefined {
  const keys = Object.keys(o)
  const extra = keys.find((k) => !expected.includes(k))
  if (extra !== undefined) return `unknown field ${JSON.stringify(extra)}`
  const missing = expected.find((k) => !keys.includes(k))
  return missing === undefined ? undefined : `no field ${JSON.stringify(missing)}`
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Check a proof offline with the public key only; throws KENNEL_ERR_PROOF_INVALID naming why. */
export function checkProof(proof: unknown, verifier: AuditVerifier): void {
  const fail = (why: string): never => {
    throw new KennelError('KENNEL_ERR_PROOF_INVALID', `proof invalid: ${why}`)
  }
  const exactly = (o: object, fields: readonly string[], name: string): void => {
    const mismatch = fieldMismatch(o, fields)
    if (mismatch !== undefined) fail(`${name} has ${mismatch}`)
  }
  if (!isObject(proof)) return fail('not a kennel proof (a JSON object)')
  const p = proof
  if (p.kind !== 'kennel-inclusion-proof/v1' && p.kind !== 'kennel-consistency-proof/v1')
    return fail(`unknown proof kind ${JSON.stringify(p.kind)}`)
  exactly(p, p.kind === 'kennel-inclusion-proof/v1' ? INCLUSION_FIELDS : CONSISTENCY_FIELDS, 'the proof')
  if (!Array.isArray(p.path) || !p.path.every((h) => typeof h === 'string' && HEX32.test(h)))
    fail('not a kennel proof (path must be an array of hex SHA-256 hashes)')
  const path = (p.path as string[]).map((h) => Buffer.from(h, 'hex'))
  const checkHead = (h: unknown, name: string): TreeHead => {
    if (!isObject(h)) return fail(`${name} head is malformed`)
    exactly(h, HEAD_FIELDS, `${name} head`)
    if (typeof h.root !== 'string' || !HEX32.test(h.root) || !Number.isSafeInteger(h.size) || (h.size as number) < 1)
      return fail(`${name} head is malformed`)
    const head = h as unknown as TreeHead
    if (!headSignatureValid(head, [verifier]))
      return fail(`${name} head (size ${head.size}) is not signed by this public key`)
    return head
  }
  if (p.kind === 'kennel-inclusion-proof/v1') {
    const head = checkHead(p.head, 'the')
    if (!isObject(p.event)) return fail('no event')
    exactly(p.event, EVENT_FIELDS, 'the event')
    const event = p.event as unknown as RecordedEvent
    const leafIndex = p.leafIndex as number
    if (p.treeSize !== head.size)
      fail(`tree size ${JSON.stringify(p.treeSize)} does not match the head (size ${head.size})`)
    if (!Number.isSafeInteger(leafIndex) || leafIndex < 0 || leafIndex >= head.size)
      fail(`leaf index ${JSON.stringify(p.leafIndex)} is not a leaf of the signed tree of size ${head.size}`)
    if (!verifyInclusion(eventLeaf(event), leafIndex, head.size, path, Buffer.from(head.root, 'hex')))
      fail(`event ${event.id} is not at leaf ${leafIndex} of the signed tree of size ${head.size}`)
    return
  }
  const first = checkHead(p.first, 'first')
  const second = checkHead(p.second, 'second')
  if (first.size > second.size) fail(`the first head (size ${first.size}) is larger than the second (${second.size})`)
  if (
    !verifyConsistency(first.size, second.size, path, Buffer.from(first.root, 'hex'), Buffer.from(second.root, 'hex'))
  )
    fail(`the head of size ${first.size} is not a prefix of the head of size ${second.size}`)
}
