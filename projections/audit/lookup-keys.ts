import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { FORGETTABLE_KEY_PREFIX } from '../readmodels/port.ts'
import type { TreeHead } from './events.ts'
import { AUDIT_HEADS_STREAM } from './events.ts'

// What the audit log indexes an event under (R16): its actor and credential (metadata) and the
// ids it names in its data, from the conventions of docs/EVENTS.md. A key is `kind:value`; the
// event's own id is indexed by the read-model store itself (EntryLookups.positionOf).

const KINDS = ['actor', 'credential', 'device', 'household', 'account', 'recording', 'serial'] as const

/** Per-message metadata (a toy's publishes, the API's messages to it) is indexed under the same
 * kinds with this prefix, so that its index can be forgotten after KENNEL_RETENTION_TELEMETRY_DAYS
 * (projections/audit/telemetry-retention.ts) while every other event stays indexed (R12). */
export const TELEMETRY_KEY_PREFIX = FORGETTABLE_KEY_PREFIX
export const TELEMETRY_TYPES: ReadonlySet<string> = new Set(['PublishAccepted', 'InboxMessagePublished'])

/** the kinds of key: KINDS, then the same for telemetry events (`telemetry/device`, …) */
export const KEY_KINDS = [...KINDS, ...KINDS.map((k) => `${TELEMETRY_KEY_PREFIX}${k}` as const)] as const

const DATA_FIELDS: ReadonlyArray<[field: string, kind: number]> = [
  ['deviceId', 2],
  ['householdId', 3],
  ['accountId', 4],
  ['ownerAccountId', 4],
  ['recordingId', 5],
  ['serial', 6],
]

/** calls `visit` with the kind (an index of KEY_KINDS) and value of each key of the event */
export function visitKeys(
  e: Pick<RecordedEvent, 'type' | 'data' | 'metadata'>,
  visit: (kind: number, value: string) => void,
): void {
  const offset = TELEMETRY_TYPES.has(e.type) ? KINDS.length : 0
  const m = e.metadata
  if (typeof m.actor === 'string') visit(offset, m.actor)
  if (typeof m.credential === 'string') visit(offset + 1, m.credential)
  const d = e.data
  if (d !== null && typeof d === 'object') {
    const data = d as Record<string, unknown>
    for (const [field, kind] of DATA_FIELDS) {
      const v = data[field]
      if (typeof v === 'string' && v !== '') visit(offset + kind, v)
    }
  }
}

/** `kind:value` strings, kept for values seen before: an event's keys are mostly the same few
 * devices and credentials, and a string looked up once carries its hash, so the key index does
 * not build and hash a new key string per event. Cleared when large (recording ids rarely repeat). */
const names = KEY_KINDS.map(() => new Map<string, string>())

export function keyName(kind: number, value: string): string {
  const byValue = names[kind]!
  let name = byValue.get(value)
  if (name === undefined) {
    if (byValue.size >= 65_536) byValue.clear()
    byValue.set(value, (name = `${KEY_KINDS[kind]}:${value}`))
  }
  return name
}

export function auditKeys(e: RecordedEvent): string[] {
  const keys: string[] = []
  visitKeys(e, (kind, value) => keys.push(keyName(kind, value)))
  return keys
}

/** the tree size a signed head names when the event is one on the heads stream, else undefined */
export function headSizeOf(e: Pick<RecordedEvent, 'type' | 'stream' | 'data'>): number | undefined {
  if (e.type !== 'TreeHeadSigned' || e.stream !== AUDIT_HEADS_STREAM) return undefined
  return Number((e.data as Partial<TreeHead> | null)?.size)
}
