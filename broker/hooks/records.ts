import type { EventMetadata } from '../../infra/eventstore/port.ts'
import type { SourceMetadata } from '../../infra/keystore/sealed-source.ts'
import type { Logger } from '../../infra/log.ts'
import { type RateLimitExceeded, securityStream } from '../../infra/net/events.ts'
import { FoldedRefusals } from '../../infra/net/folded-refusals.ts'
import type { PeerIdentity, PeerRefusal } from '../authenticate.ts'
import type { ToySource } from '../broker.ts'
import { type BrokerEvent, mqttStream } from '../events.ts'
import type { BrokerMetrics } from '../metrics.ts'
import type { RateRefusal } from '../ratelimit.ts'

// What the hooks record of a toy: the metadata of its events (its address in clear, sealed or
// left out, as toySource says), its refusals at the handshake or CONNECT (DeviceAuthFailed), and
// its rate-limit refusals, folded per minute (RateLimitExceeded).

/** at most two RateLimitExceeded events per limit, window and key per minute, as the API's */
const RATE_LIMIT_EVENT_INTERVAL_MS = 60_000

/** an accepted connection's address as its events record it (toySource): sealed at its CONNECT
 * for the household the toy had then, and sealed again for a new one when the toy is paired
 * while connected (until that is done its events record no address); once sealed, never in
 * clear for the rest of the connection */
export type Source = { householdId: string | undefined; source: SourceMetadata; refreshing: boolean }

export interface DeviceRecords {
  record(stream: string, event: BrokerEvent, metadata: EventMetadata): Promise<void>
  /** set by the connect hook once the connection's address is sealed or not */
  readonly sources: WeakMap<PeerIdentity, Source>
  refusalMeta(id: PeerIdentity): EventMetadata
  /** DeviceConnected and DeviceDisconnected: the address as toySource says (sealed, clear or none) */
  connectionMeta(id: PeerIdentity): EventMetadata
  /** the other events of a session: a paired toy's address is on its connection's events only
   * (one connection, one address), not sealed again on every message; an unpaired one's in clear */
  deviceMeta(id: PeerIdentity): EventMetadata
  /** the address in a connection event's data: only where it is recorded in clear */
  clearIp(id: PeerIdentity): { ip?: string }
  recordRefusal(r: PeerRefusal): Promise<void>
  recordRateLimit(refusal: RateRefusal, key: string, id: PeerIdentity): Promise<void>
  /** record the rate-limit refusals still tallied (on close) */
  flush(): Promise<void>
}

export function createDeviceRecords(opts: {
  record(stream: string, event: BrokerEvent, metadata: EventMetadata): Promise<void>
  metrics: BrokerMetrics
  log: Logger
  now(): Date
  toySource: ToySource | undefined
}): DeviceRecords {
  const { record, metrics, log, now } = opts

  const refusalMeta = (id: PeerIdentity): EventMetadata => ({
    actor: `device:${id.deviceId}`,
    credential: `cert:${id.serial}`,
    sourceIp: id.ip,
  })
  const sources = new WeakMap<PeerIdentity, Source>()
  function sourceOf(id: PeerIdentity): SourceMetadata | undefined {
    const entry = sources.get(id)
    if (entry === undefined || opts.toySource === undefined) return undefined
    const household = opts.toySource.householdOf(id.deviceId)
    if (household === entry.householdId) return entry.source
    // unpaired while connected (its household erased: it is being cut off): never in clear again
    if (household === undefined) return {}
    if (!entry.refreshing) {
      entry.refreshing = true
      void Promise.resolve(opts.toySource.source(household, id.ip)).then(
        (source) => Object.assign(entry, { householdId: household, source, refreshing: false }),
        (err: unknown) => (
          (entry.refreshing = false),
          log.warn(
            { err, deviceId: id.deviceId },
            'cannot seal the address of a toy paired while connected; its events record none until it can',
          )
        ),
      )
    }
    return {}
  }
  const connectionMeta = (id: PeerIdentity): EventMetadata => {
    const source = sourceOf(id)
    return source === undefined
      ? refusalMeta(id)
      : { actor: `device:${id.deviceId}`, credential: `cert:${id.serial}`, ...source }
  }
  const deviceMeta = (id: PeerIdentity): EventMetadata => {
    const source = sourceOf(id)
    return source === undefined || 'sourceIp' in source
      ? refusalMeta(id)
      : { actor: `device:${id.deviceId}`, credential: `cert:${id.serial}` }
  }
  const clearIp = (id: PeerIdentity): { ip?: string } => {
    const source = sourceOf(id)
    return source === undefined || 'sourceIp' in source ? { ip: id.ip } : {}
  }

  function recordRefusal(r: PeerRefusal): Promise<void> {
    metrics.authFailures.inc({ reason: r.reason })
    const data = {
      reason: r.reason,
      ip: r.ip,
      fingerprint: r.fingerprint,
      deviceId: r.deviceId,
      serial: r.serial,
      detail: r.detail,
    }
    const metadata: EventMetadata = {
      actor: r.trusted && r.deviceId ? `device:${r.deviceId}` : 'anonymous',
      sourceIp: r.ip,
      ...(r.serial ? { credential: `cert:${r.serial}` } : {}),
    }
    // a certificate that chains to the device CA names a device we issued to; anything else is anonymous
    const stream = r.trusted && r.deviceId ? mqttStream(r.deviceId) : securityStream(now())
    return record(stream, { type: 'DeviceAuthFailed', data: JSON.parse(JSON.stringify(data)) }, metadata)
  }

  // the first refusal per limit, window and key (device or address) in a minute is recorded at
  // once; the rest of that minute as one event with their number, when it ends or on close (R11, R19)
  type Limited = { stream: string; event: RateLimitExceeded; metadata: EventMetadata }
  const recordLimited = ({ stream, event, metadata }: Limited, refusals: number): Promise<void> =>
    record(stream, { ...event, data: { ...event.data, refusals } }, metadata).catch(() => undefined)
  const limited = new FoldedRefusals<Limited>(RATE_LIMIT_EVENT_INTERVAL_MS, recordLimited)
  function recordRateLimit(refusal: RateRefusal, key: string, id: PeerIdentity): Promise<void> {
    metrics.rateLimited.inc({ limit: refusal.limit })
    const data: RateLimitExceeded['data'] = {
      listener: 'mqtt',
      limit: refusal.limit,
      window: refusal.window,
      deviceId: id.deviceId,
      serial: id.serial,
      ip: id.ip,
      retryAfterSeconds: Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)),
      refusals: 1,
    }
    const limit: Limited = {
      stream: mqttStream(id.deviceId),
      event: { type: 'RateLimitExceeded', data },
      metadata: refusalMeta(id),
    }
    return limited.count(`${refusal.limit}:${refusal.window}:${key}`, Date.now(), limit)
      ? record(limit.stream, limit.event, limit.metadata)
      : Promise.resolve()
  }

  return {
    record,
    sources,
    refusalMeta,
    connectionMeta,
    deviceMeta,
    clearIp,
    recordRefusal,
    recordRateLimit,
    flush: () => limited.flush(),
  }
}
