import { packAscending, packRuns, timesInMs, unpackAscending, unpackRuns } from './packing.ts'
import type { EntryColumns, EntryRow, StoredEntry } from './port.ts'

// Entries of the embedded read models in runs: one row of projection_entry_runs per run of up to
// RUN consecutive entries of a commit, their fields as packed arrays (packing.ts), so a rebuild
// writes a thousandth of the rows it would write with one row per event.

/** entries per run row: consecutive ordinals, positions and times packed, digests of one length
 * (another length starts a run of its own), ids as a JSON array */
const RUN = 1024

/** a run as written: the columns of its row after `projection`, in the table's order */
export type RunValues = [
  lastPosition: number,
  firstPosition: number,
  firstOrdinal: number,
  positions: Buffer,
  times: Buffer,
  digests: Buffer,
  eventIds: string,
]

function runValues(
  firstOrdinal: number,
  positions: Float64Array,
  times: Float64Array,
  digests: Buffer,
  ids: readonly string[],
): RunValues {
  return [
    positions[positions.length - 1]!,
    positions[0]!,
    firstOrdinal,
    packAscending(positions),
    packRuns(times),
    digests,
    JSON.stringify(ids),
  ]
}

/** entries in columns as runs of up to RUN */
export function* runsOfColumns(c: EntryColumns): Iterable<RunValues> {
  const end = c.start + c.length
  for (let from = c.start; from < end; from += RUN) {
    const to = Math.min(from + RUN, end)
    const times = new Float64Array(to - from)
    const msOf = timesInMs()
    for (let i = from; i < to; i++) times[i - from] = msOf(c.times[i]!)
    const digests = Buffer.from(c.digests.buffer, c.digests.byteOffset + from * 32, (to - from) * 32)
    yield runValues(
      c.firstOrdinal + from - c.start,
      c.positions.subarray(from, to),
      times,
      digests,
      c.eventIds.slice(from, to),
    )
  }
}

/** entries as runs: up to RUN consecutive ordinals with digests of one length */
export function* runsOfEntries(entries: readonly EntryRow[]): Iterable<RunValues> {
  let start = 0
  while (start < entries.length) {
    const first = entries[start]!.entry
    let end = start + 1
    while (
      end < entries.length &&
      end - start < RUN &&
      entries[end]!.entry.digest.length === first.digest.length &&
      entries[end]!.entry.ordinal === first.ordinal + end - start
    )
      end++
    const n = end - start
    const positions = new Float64Array(n)
    const times = new Float64Array(n)
    const digests = Buffer.allocUnsafe(n * first.digest.length)
    const ids: string[] = new Array(n)
    const msOf = timesInMs()
    for (let k = 0; k < n; k++) {
      const { position, eventId, time, entry } = entries[start + k]!
      positions[k] = position
      times[k] = msOf(time)
      digests.set(entry.digest, k * first.digest.length)
      ids[k] = eventId
    }
    yield runValues(first.ordinal, positions, times, digests, ids)
    start = end
  }
}

/** the columns a run is read with */
export const RUN_COLUMNS = 'last_position, first_ordinal, positions, times, digests, event_ids'

export interface RunRow {
  last_position: number
  first_ordinal: number
  positions: Buffer
  times: Buffer
  digests: Buffer
  event_ids: string
}

/** a run row decoded: parallel arrays, digests as one buffer of equal slices */
export interface Run {
  lastPosition: number
  firstOrdinal: number
  positions: Float64Array
  times: Float64Array
  digests: Buffer
  digestLength: number
  eventIds: string[]
}

export function decodeRun(r: RunRow): Run {
  const positions = unpackAscending(r.positions)
  return {
    lastPosition: r.last_position,
    firstOrdinal: r.first_ordinal,
    positions,
    times: unpackRuns(r.times),
    digests: r.digests,
    digestLength: positions.length === 0 ? 0 : r.digests.length / positions.length,
    eventIds: JSON.parse(r.event_ids) as string[],
  }
}

/** the entry at index i of a run, its time's text made by `isoOf` (packing.ts isoTimes) and its
 * digest a view of the run's */
export function entryOf(run: Run, i: number, isoOf: (ms: number) => string): StoredEntry {
  return {
    ordinal: run.firstOrdinal + i,
    position: run.positions[i]!,
    time: isoOf(run.times[i]!),
    digest: run.digests.subarray(i * run.digestLength, (i + 1) * run.digestLength),
  }
}

/** index of `position` in a run, -1 when absent */
export function indexIn(run: Run, position: number): number {
  let lo = 0
  let hi = run.positions.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const p = run.positions[mid]!
    if (p === position) return mid
    if (p < position) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}
