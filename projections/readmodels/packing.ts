// Compact columns for the embedded read models: non-negative integers as LEB128 varints, signed
// ones zigzag-encoded, both exact up to 2^53. Positions and times are stored as deltas, so a run
// of consecutive positions or equal times takes a byte per value.

class ByteWriter {
  private bytes: Uint8Array
  length = 0
  constructor(capacity: number) {
    this.bytes = new Uint8Array(Math.max(16, capacity))
  }

  uint(v: number): void {
    if (this.length + 8 > this.bytes.length) {
      const bigger = new Uint8Array(this.bytes.length * 2)
      bigger.set(this.bytes)
      this.bytes = bigger
    }
    while (v >= 0x80) {
      this.bytes[this.length++] = (v % 0x80) | 0x80
      v = Math.floor(v / 0x80)
    }
    this.bytes[this.length++] = v
  }

  int(v: number): void {
    this.uint(v >= 0 ? 2 * v : -2 * v - 1)
  }

  buffer(): Buffer {
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.length)
  }
}

class ByteReader {
  private at = 0
  constructor(private readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.at >= this.bytes.length
  }

  uint(): number {
    let v = 0
    let scale = 1
    for (;;) {
      const b = this.bytes[this.at++]
      if (b === undefined) throw new RangeError('truncated varint')
      v += (b & 0x7f) * scale
      if (b < 0x80) return v
      scale *= 0x80
    }
  }

  int(): number {
    const z = this.uint()
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2
  }
}

/** ascending integers (positions) as deltas */
export function packAscending(values: ArrayLike<number>, from = 0, to = values.length): Buffer {
  const w = new ByteWriter(to - from)
  let previous = 0
  for (let i = from; i < to; i++) {
    w.int(values[i]! - previous)
    previous = values[i]!
  }
  return w.buffer()
}

export function unpackAscending(bytes: Uint8Array): Float64Array {
  const r = new ByteReader(bytes)
  const out: number[] = []
  let value = 0
  while (!r.done) out.push((value += r.int()))
  return Float64Array.from(out)
}

/** integers (times in ms) as runs of equal values: [delta, count] pairs */
export function packRuns(values: ArrayLike<number>, from = 0, to = values.length): Buffer {
  const w = new ByteWriter(16)
  let previous = 0
  for (let i = from; i < to; ) {
    const v = values[i]!
    let j = i + 1
    while (j < to && values[j] === v) j++
    w.int(v - previous)
    w.uint(j - i)
    previous = v
    i = j
  }
  return w.buffer()
}

export function unpackRuns(bytes: Uint8Array): Float64Array {
  const r = new ByteReader(bytes)
  const out: number[] = []
  let value = 0
  while (!r.done) {
    value += r.int()
    for (let n = r.uint(); n > 0; n--) out.push(value)
  }
  return Float64Array.from(out)
}

/** postings [position, ms, position, ms, …] (positions ascending) as deltas of both */
export function packPostings(list: Float64Array): Buffer {
  const w = new ByteWriter(list.length + 8)
  let position = 0
  let ms = 0
  for (let i = 0; i < list.length; i += 2) {
    w.int(list[i]! - position)
    w.int(list[i + 1]! - ms)
    position = list[i]!
    ms = list[i + 1]!
  }
  return w.buffer()
}

export function unpackPostings(bytes: Uint8Array): Float64Array {
  const r = new ByteReader(bytes)
  const out: number[] = []
  let position = 0
  let ms = 0
  while (!r.done) out.push((position += r.int()), (ms += r.int()))
  return Float64Array.from(out)
}

/** an event time in ms, as packed (0 for a text that is not a time) */
const toMs = (iso: string): number => {
  const ms = Date.parse(iso)
  return Number.isFinite(ms) ? ms : 0
}

/** toMs of the events of a commit, which mostly share their time: each new text parsed once */
export function timesInMs(): (iso: string) => number {
  let last = ''
  let ms = 0
  return (iso) => (iso === last ? ms : ((last = iso), (ms = toMs(iso))))
}

/** the other way, for the entries of a run, which mostly share their time: each new time
 * formatted once (the last one's text is kept by whoever holds the function) */
export function isoTimes(): (ms: number) => string {
  let last = Number.NaN
  let iso = ''
  return (ms) => (ms === last ? iso : ((last = ms), (iso = new Date(ms).toISOString())))
}
