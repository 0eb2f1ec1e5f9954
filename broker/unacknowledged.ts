// QoS 1 publishes whose PublishAccepted was committed after the toy's connection had closed.
//
// A PUBACK waits for the publish's event to commit. When the store blinks, the append is retried
// with the same event ids; a retry can commit after the toy's connection has already been closed
// (another of its publishes was refused meanwhile). Aedes then neither acknowledges nor routes the
// message (it writes the PUBACK first and routes only once that write succeeded), and the toy
// sends it again after reconnecting, with the same packet identifier and payload. Without this
// record the re-send would be accepted a second time: two PublishAccepted events for one
// message. With it, the re-send is acknowledged and routed on the strength of the event already
// committed.
//
// MQTT.js does not set the DUP flag on such re-sends, so the match is on the device, the packet
// identifier and the payload's SHA-256. Entries are taken once, and forgotten after `ttlMs` or
// when more than `max` are held (oldest first): the worst case of forgetting is the protocol's
// own (QoS 1 is at least once), never a lost message.

export interface UnacknowledgedPublishes {
  /** a publish committed while its connection was gone */
  remember(deviceId: string, messageId: number, sha256: string): void
  /** true, once, when this publish is the re-send of one remembered */
  take(deviceId: string, messageId: number, sha256: string): boolean
  readonly size: number
}

export function createUnacknowledgedPublishes({
  max = 10_000,
  ttlMs = 10 * 60_000,
  now = () => Date.now(),
} = {}): UnacknowledgedPublishes {
  // insertion order is expiry order: every entry lives ttlMs
  const entries = new Map<string, number>()
  const key = (deviceId: string, messageId: number, sha256: string): string =>
    `${deviceId}\u0000${messageId}\u0000${sha256}`
  function expire(): void {
    const t = now()
    for (const [k, expires] of entries) {
      if (expires > t && entries.size <= max) break
      entries.delete(k)
    }
  }
  return {
    remember(deviceId, messageId, sha256) {
      const k = key(deviceId, messageId, sha256)
      entries.delete(k)
      entries.set(k, now() + ttlMs)
      expire()
    },
    take(deviceId, messageId, sha256) {
      if (entries.size === 0) return false
      expire()
      return entries.delete(key(deviceId, messageId, sha256))
    },
    get size() {
      return entries.size
    },
  }
}
