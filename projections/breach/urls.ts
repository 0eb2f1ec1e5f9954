import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import type { AuditKey, AuditLog } from '../audit/log.ts'
import type { Revocation } from './revocation.ts'

// The presigned URLs a credential obtained and their use (R5, R16). A URL is a bearer capability:
// whoever holds it can use it until it expires, so each use is reported, and flagged when it came
// after the credential was revoked.

export interface ReportedAction {
  position: number
  time: string
  type: string
  stream: string
  id: string
}

export interface UrlUse extends ReportedAction {
  /** `url-id`: the use names this URL's id. `inferred`: matched by recording, time window and
   * expiry only, because the events predate URL ids (or are uploads confirmed by the recording's
   * `RecordingStored`), or because the same URL was issued twice in one second; another holder
   * of a URL of the same recording may have been the one who used it. */
  match: 'url-id' | 'inferred'
  /** the URL was used after the credential that obtained it was revoked */
  afterRevocation: boolean
}

export interface PresignedUrl {
  kind: 'upload' | 'download'
  recordingId: string
  /** the household of the recording */
  householdId?: string
  /** the URL's id (api/recordings/service.ts urlIdOf); absent on older events */
  urlId?: string
  issuedAt: string
  until: string
  position: number
  /** events showing the URL was used before it expired */
  used: UrlUse[]
}

export const URL_TYPES: Readonly<Record<string, PresignedUrl['kind']>> = { UploadUrlIssued: 'upload', DownloadUrlIssued: 'download' }
const ISSUED_TYPE: Record<PresignedUrl['kind'], string> = { upload: 'UploadUrlIssued', download: 'DownloadUrlIssued' }
/** events that show a presigned URL was used, the most direct first: an upload's own
 * `RecordingUploaded` (with the URL's id) where the API writes one, else the recording's
 * `RecordingStored`, which confirms that some upload URL of it was used */
const URL_USE_TYPES: Record<PresignedUrl['kind'], readonly string[]> = { upload: ['RecordingUploaded', 'RecordingStored'], download: ['RecordingDownloaded'] }

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
export const action = (e: RecordedEvent): ReportedAction => ({ position: e.position, time: e.time, type: e.type, stream: e.stream, id: e.id })

/** the URL an issuance event names, not yet matched to its uses */
export function issuedUrl(e: RecordedEvent): PresignedUrl | undefined {
  const kind = URL_TYPES[e.type]
  const d = (e.data ?? {}) as Record<string, unknown>
  const recordingId = str(d.recordingId)
  if (!kind || !recordingId) return undefined
  const urlId = str(d.urlId)
  const householdId = str(d.householdId)
  return { kind, recordingId, ...(householdId ? { householdId } : {}), ...(urlId ? { urlId } : {}), issuedAt: e.time, until: str(d.until) ?? e.time, position: e.position, used: [] }
}

/** the events showing the URL was used: on its recording, after it was issued and before it
 * expired; by URL id where both events carry one, else inferred (see UrlUse) */
export async function urlUses(log: AuditLog, url: PresignedUrl, revocation: Revocation | undefined): Promise<UrlUse[]> {
  const key: AuditKey = `recording:${url.recordingId}`
  const window = { since: url.issuedAt, until: new Date(Date.parse(url.until) + 1).toISOString() }
  const found = (await log.events([key], window, URL_USE_TYPES[url.kind])).filter((e) => e.position > url.position)
  const type = URL_USE_TYPES[url.kind].find((t) => found.some((e) => e.type === t))
  const candidates = found.filter((e) => e.type === type)
  // identical URLs (same recording, same second) share an id: a use of one is a use of either
  const twins = url.urlId ? (await log.events([key], {}, [ISSUED_TYPE[url.kind]])).filter((e) => (e.data as Record<string, unknown>).urlId === url.urlId).length : 0
  const use = (e: RecordedEvent, match: UrlUse['match']): UrlUse => ({ ...action(e), match, afterRevocation: revocation !== undefined && e.position > revocation.position })
  return candidates.flatMap((e): UrlUse[] => {
    const d = (e.data ?? {}) as Record<string, unknown>
    const id = str(d.urlId)
    if (url.urlId && id) return id === url.urlId ? [use(e, twins > 1 ? 'inferred' : 'url-id')] : []
    // a download names the expiry of the URL it used
    const until = str(d.until)
    return !until || Date.parse(until) === Date.parse(url.until) ? [use(e, 'inferred')] : []
  })
}
