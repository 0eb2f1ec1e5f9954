import type { AccountEvent } from '../api/accounts/events.ts'
import type { GuardEvent } from '../api/guard/events.ts'
import type { HouseholdEvent } from '../api/households/events.ts'
import type { RecordingEvent } from '../api/recordings/events.ts'
import type { BrokerEvent } from '../broker/events.ts'
import type { DevicesContextEvent } from '../devices/events.ts'
import type { ListenerGuardEvent } from '../infra/net/events.ts'
import type { AuditEvent } from '../projections/audit/events.ts'
import type { BreachEvent } from '../projections/breach/events.ts'
import type { MonitorEvent } from '../projections/monitor/events.ts'

// Every event type kennel appends, at run time (for `kennel events tail --type`). Each context's
// events are a union in its own events.ts; the composition root is the one place that may name
// them all, and the compiler keeps this list equal to their union: a type added to a context
// without being added here, or a name here that no context has, does not compile.

export type KennelEvent =
  | BrokerEvent
  | ListenerGuardEvent
  | DevicesContextEvent
  | AccountEvent
  | HouseholdEvent
  | RecordingEvent
  | GuardEvent
  | AuditEvent
  | BreachEvent
  | MonitorEvent

const known = {
  // broker/
  DeviceConnected: true,
  DeviceDisconnected: true,
  DeviceAuthFailed: true,
  PublishAccepted: true,
  PublishDenied: true,
  SubscriptionGranted: true,
  SubscriptionDenied: true,
  InboxMessagePublished: true,
  // infra/net/events.ts: the broker's and the API's listeners
  RateLimitExceeded: true,
  ConnectionDenylisted: true,
  ConnectionCapExceeded: true,
  // devices/
  DeviceEnrolled: true,
  CertificateIssued: true,
  CertificateRenewed: true,
  CertificateRevoked: true,
  DeviceRevoked: true,
  DeviceClaimed: true,
  DeviceUnpaired: true,
  ClaimCodeRejected: true,
  CaCreated: true,
  CaAdded: true,
  // api/
  AccountCreated: true,
  VerificationRequested: true,
  AccountVerified: true,
  LoginBlockLifted: true,
  EmailReserved: true,
  RoleGranted: true,
  SessionStarted: true,
  SessionEnded: true,
  LoginFailed: true,
  PrivilegedRouteUsed: true,
  AccountErasureStarted: true,
  AccountErased: true,
  AccountExported: true,
  HouseholdCreated: true,
  RecordingCreated: true,
  UploadUrlIssued: true,
  DownloadUrlIssued: true,
  RecordingStored: true,
  RecordingDownloaded: true,
  RecordingUploaded: true,
  RecordingCompletionRefused: true,
  RecordingUrlRefused: true,
  RecordingExpired: true,
  DeviceAuthRefused: true,
  // projections/
  TreeHeadSigned: true,
  BreachReportGenerated: true,
  AccountHolderNotificationRequired: true,
  SecurityAlertRaised: true,
  AlertDeliveryFailed: true,
} as const satisfies Record<KennelEvent['type'], true>

export const eventTypes: readonly KennelEvent['type'][] = (Object.keys(known) as KennelEvent['type'][]).sort()

export const isEventType = (name: string): name is KennelEvent['type'] => Object.hasOwn(known, name)
