import type { EventMetadata, RecordedEvent } from './port.ts'
// Canonical JSON: keys sorted at every level (UTF-16 code unit order), no whitespace. The audit
// log hashes events in this form (projections/audit/canonical.ts), and the embedded store writes
// data and metadata in it (storedJson), so that an event's canonical bytes can be assembled from
// the stored text without parsing it.

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value)
    // undefined, functions and symbols have no JSON form; an adapter never returns them
    return s === undefined ? 'null' : s
  }
  if (Array.isArray(value)) {
    let out = '['
    for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + canonicalJson(value[i])
    return `${out}]`
  }
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj).sort()
  let out = '{'
  let first = true
  for (const k of keys) {
    const v = obj[k]
    if (v === undefined) continue
    out += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`
    first = false
  }
  return `${out}}`
}

/** Marks a value the fast path cannot reorder faithfully; canonicalJson handles it. */
const SLOW = Symbol('slow')

/** The value with every object's keys in sorted order, so that the native JSON.stringify emits
 * canonical JSON; the value itself when it already is. SLOW when key order cannot be forced: an
 * integer-like key (enumerated before the others whatever the insertion order), `__proto__`
 * (an assignment would set the prototype), or what JSON.stringify treats unlike canonicalJson (a
 * function or symbol value, toJSON, a class instance). It runs for every event appended, so it
 * allocates only what it must: nothing for a value already in order, and for an object out of
 * order only the copy (children that are primitives are not visited). */
function sortedCopy(value: unknown): unknown {
  if (value === null || typeof value !== 'object')
    return typeof value === 'function' || typeof value === 'symbol' ? SLOW : value
  if (Array.isArray(value)) {
    let out: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i]
      if (!needsVisit(v)) continue
      const s = sortedCopy(v)
      if (s === SLOW) return SLOW
      if (s !== v) (out ??= value.slice())[i] = s
    }
    return out ?? value
  }
  const proto = Object.getPrototypeOf(value)
  if ((proto !== Object.prototype && proto !== null) || typeof (value as { toJSON?: unknown }).toJSON === 'function')
    return SLOW
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj)
  let sorted = true
  /** copies of the children that changed, by key index */
  let copies: unknown[] | undefined
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!
    const c = k.charCodeAt(0)
    if ((c >= 48 && c <= 57) || k === '__proto__') return SLOW
    if (i > 0 && keys[i - 1]! > k) sorted = false
    const v = obj[k]
    if (!needsVisit(v)) continue
    const s = sortedCopy(v)
    if (s === SLOW) return SLOW
    if (s !== v) (copies ??= new Array<unknown>(keys.length))[i] = s
  }
  if (sorted && copies === undefined) return value
  const out: Record<string, unknown> = {}
  if (copies === undefined) {
    // the default sort orders by UTF-16 code units, as canonicalJson does
    for (const k of keys.sort()) out[k] = obj[k]
    return out
  }
  const order = keys.map((_, i) => i)
  if (!sorted) order.sort((a, b) => (keys[a]! < keys[b]! ? -1 : 1))
  for (const i of order) out[keys[i]!] = copies[i] ?? obj[keys[i]!]
  return out
}

/** objects and arrays may need a copy, functions and symbols make the value SLOW */
const needsVisit = (v: unknown): boolean =>
  (v !== null && typeof v === 'object') || typeof v === 'function' || typeof v === 'symbol'

/** canonicalJson(value), through the native serialiser whenever key order can be forced */
export function canonicalJsonFast(value: unknown): string {
  const sorted = sortedCopy(value)
  if (sorted === SLOW) return canonicalJson(value)
  const s = JSON.stringify(sorted)
  return s === undefined ? 'null' : s
}

/** JSON.stringify(value) (toJSON, undefined and non-finite numbers as it treats them) with every
 * object's keys sorted: canonicalJson(JSON.parse(storedJson(v))) === storedJson(v). */
export function storedJson(value: unknown): string | undefined {
  let sorted: unknown
  try {
    sorted = sortedCopy(value)
  } catch {
    // a cycle: JSON.stringify below names it
    sorted = SLOW
  }
  if (sorted !== SLOW) return JSON.stringify(sorted)
  const plain = JSON.stringify(value)
  return plain === undefined ? undefined : canonicalJson(JSON.parse(plain))
}

/** A recorded event that carries the texts its data and metadata were stored as, when they are
 * canonical JSON (the embedded store writes them so): the audit log hashes an event's canonical
 * form, and can assemble it from these instead of serialising the parsed values again. The texts
 * are private fields: a copy of the event (`{ ...event, data }`) does not carry them. */
export class CanonicalTextEvent implements RecordedEvent {
  readonly #data: string
  readonly #metadata: string

  constructor(
    readonly id: string,
    readonly type: string,
    readonly stream: string,
    readonly revision: number,
    readonly position: number,
    readonly time: string,
    readonly data: unknown,
    readonly metadata: EventMetadata,
    dataText: string,
    metadataText: string,
  ) {
    this.#data = dataText
    this.#metadata = metadataText
  }

  /** [data, metadata] as canonical JSON text, when the event came with them */
  static textsOf(e: RecordedEvent): readonly [data: string, metadata: string] | undefined {
    return #data in e ? [e.#data, e.#metadata] : undefined
  }
}
