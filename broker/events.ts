import type { ListenerGuardEvent } from '../infra/net/events.ts'

// Every event of the broker context (docs/EVENTS.md). A device's activity goes to
// `mqtt-{deviceId}` once its certificate chains to the device CA; attempts without a trusted
// identity go to `security-{yyyy-mm-dd}` (securityStream). Payloads never appear, only their size
// and SHA-256. The refusals it shares with the API (RateLimitExceeded, ConnectionDenylisted,
// ConnectionCapExceeded) are one family in infra/net/events.ts, written with `listener: 'mqtt'`.

export type DisconnectReason =
  | 'client-disconnect'
  | 'connection-lost'
  | 'keepalive-timeout'
  | 'protocol-error'
  | 'revoked'
  | 'superseded'
  | 'taken-over'
  | 'publish-denied'
  | 'rate-limited'
  | 'event-store-unavailable'
  | 'broker-shutdown'
  | 'broker-crashed'

/** why the broker closed a live session itself (Broker.kick) */
export type KickReason = Extract<DisconnectReason, 'revoked' | 'superseded'>
export const kickReasons = ['revoked', 'superseded'] as const satisfies readonly KickReason[]

export type AuthFailureReason =
  | 'no-certificate'
  | 'untrusted-certificate'
  | 'self-signed-certificate'
  | 'certificate-expired'
  | 'certificate-not-yet-valid'
  | 'certificate-invalid'
  | 'certificate-revoked'
  | 'certificate-superseded'
  | 'certificate-unknown'
  | 'device-revoked'
  | 'invalid-device-id'
  | 'client-id-mismatch'
  | 'protocol-refused'

/** `connectionId` (absent in events before it was added) pairs a connection's DeviceConnected with its one DeviceDisconnected */
/** `ip` only for a toy with no household: a paired toy's address is in the metadata, sealed with its household's key (docs/EVENTS.md) */
export interface DeviceConnected {
  type: 'DeviceConnected'
  data: { deviceId: string; serial: string; ip?: string; clean: boolean; protocolVersion: number; connectionId: string }
}
export interface DeviceDisconnected {
  type: 'DeviceDisconnected'
  data: { deviceId: string; reason: DisconnectReason; ip?: string; connectionId: string }
}
export interface DeviceAuthFailed {
  type: 'DeviceAuthFailed'
  data: {
    reason: AuthFailureReason
    ip: string
    fingerprint?: string
    deviceId?: string
    serial?: string
    detail?: string
  }
}
export interface PublishAccepted {
  type: 'PublishAccepted'
  data: { deviceId: string; topic: string; qos: number; retain: boolean; bytes: number; sha256: string }
}
export interface PublishDenied {
  type: 'PublishDenied'
  data: { deviceId: string; topic: string; qos: number; bytes: number; reason: string; will: boolean }
}
export interface SubscriptionGranted {
  type: 'SubscriptionGranted'
  data: { deviceId: string; filter: string; qos: number }
}
export interface SubscriptionDenied {
  type: 'SubscriptionDenied'
  data: { deviceId: string; filter: string; reason: string }
}
/** the backend (not a toy) sent a message to a toy's inbox */
export interface InboxMessagePublished {
  type: 'InboxMessagePublished'
  data: { deviceId: string; topic: string; qos: number; bytes: number; sha256: string }
}

export type BrokerEvent =
  | DeviceConnected
  | DeviceDisconnected
  | DeviceAuthFailed
  | PublishAccepted
  | PublishDenied
  | SubscriptionGranted
  | SubscriptionDenied
  | InboxMessagePublished
  | ListenerGuardEvent

export const brokerEventTypes = [
  'DeviceConnected',
  'DeviceDisconnected',
  'DeviceAuthFailed',
  'PublishAccepted',
  'PublishDenied',
  'SubscriptionGranted',
  'SubscriptionDenied',
  'RateLimitExceeded',
  'ConnectionDenylisted',
  'ConnectionCapExceeded',
  'InboxMessagePublished',
] as const satisfies readonly BrokerEvent['type'][]

export const mqttStream = (deviceId: string): string => `mqtt-${deviceId}`

/** R19: the client is answered only once these are committed: the security-relevant ones, and
 * PublishAccepted, whose commit the PUBACK (QoS 1) and the routing wait for, so that a publish
 * kennel acknowledged is on record even after a crash. The rest are batched. */
export function awaitsCommit(event: BrokerEvent): boolean {
  switch (event.type) {
    case 'DeviceConnected':
    case 'DeviceAuthFailed':
    case 'PublishAccepted':
    case 'PublishDenied':
    case 'SubscriptionDenied':
    case 'RateLimitExceeded':
    case 'ConnectionDenylisted':
    case 'ConnectionCapExceeded':
      return true
    case 'DeviceDisconnected':
    case 'SubscriptionGranted':
    case 'InboxMessagePublished':
      return false
    default: {
      const _: never = event
      return _
    }
  }
}
