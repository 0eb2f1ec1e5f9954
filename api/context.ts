import type { Redis } from 'ioredis'
import type { Config } from '../infra/config.ts'
import type { BlobStore } from '../infra/blobstore/port.ts'
import type { AppendResult, EventStore, ExpectedRevision, NewEvent } from '../infra/eventstore/port.ts'
import type { Documents } from '../projections/projection.ts'
import type { EmailProtector, PersonalData } from './accounts/personal-data.ts'
import type { HouseholdSources } from '../infra/keystore/sealed-source.ts'
import type { LoginLimiter } from './accounts/login-limiter.ts'
import type { SignupMailLimiter } from './accounts/signup-mail-limiter.ts'
import type { Mailer } from '../infra/mail/port.ts'
import type { RequestLimit } from './guard/window-limiter.ts'
import type { ApiMetrics } from './metrics.ts'

/** how the API reaches a toy: publish on `toys/{deviceId}/inbox/{subtopic}` (wired to the broker by bin/) */
export type NotifyDevice = (
  deviceId: string,
  subtopic: string,
  payload: Record<string, unknown>,
) => void | Promise<void>

export interface PasswordHashing {
  memoryCost: number
  timeCost: number
  parallelism: number
}

/** what every route plugin receives: the dependencies plus the read models and guards */
export interface ApiContext {
  config: Config
  store: EventStore
  blobs: BlobStore
  notifyDevice: NotifyDevice
  /** the device CA (devices/ca.ts), for claims, renewals and revocations */
  ca: unknown
  now(): Date
  /** the origin of the URLs the API hands out (KENNEL_PUBLIC_URL, or the listener's own
   * address), never a request's Host header (R5, R13) */
  publicUrl(): string
  docs: Documents
  /** append, then wait until the read models have applied it (read-your-writes) */
  append(stream: string, events: readonly NewEvent[], expectedRevision?: ExpectedRevision): Promise<AppendResult>
  /** wait until the read models have applied everything up to the store's head */
  catchUp(): Promise<void>
  emails: EmailProtector
  /** personal data other than e-mails (household names), sealed with the person's key (R12) */
  personalData: PersonalData
  /** paired toys' addresses, sealed with their household's key (R12) */
  householdSources: HouseholdSources
  loginLimiter: LoginLimiter
  /** sign-up confirmation mails (infra/mail) */
  mailer: Mailer
  signupMailLimiter: SignupMailLimiter
  /** per certificate, on the toys' routes */
  deviceLimiter: RequestLimit
  /** per account, on the bearer routes */
  accountLimiter: RequestLimit
  metrics: ApiMetrics
  passwordHashing: PasswordHashing
  redis: Redis | undefined
}
