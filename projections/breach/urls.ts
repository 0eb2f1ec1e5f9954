import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import type { AuditKey, AuditLog } from '../audit/log.ts'
import type { Revocation } from './revocation.ts'

// The presigned URLs a credential obtained and their use (R5, R16). A URL is a bearer capability:
// whoever holds it can use it until it expires, so each use is reported, and flagged when it came
// after the credential was revoked. The embedded blob store refuses a URL whose credential was
// revoked (R3) and records the refusal (`RecordingUrlRefused`): nothing was served, but someone
// still holds the URL, so each refused attempt is reported beside the uses, and flagged the same
// way. S3 serves its URLs itself and cannot refuse them: there, and in events written before the
// embedded store refused, a use after the revocation is a use.

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

export interface UrlRefusal extends ReportedAction {
  /** as UrlUse's: the refusal names this URL's id, or was matched by recording and expiry */
  match: UrlUse['match']
  /** why the embedded store refused it: `device-revoked`, `certificate-revoked`, `session-ended`,
   * `already-used`, `sha256-mismatch`, … (RecordingUrlRefused.reason) */
  reason: string
  /** the KENNEL_ERR_ code answered */
  code?: string
  /** the refused attempts this event stands for: the first of a minute is recorded alone, the
   * rest of that minute together, at the minute's end */
  attempts: number
  /** where the attempts came from (metadata.sourceIp), when recorded */
  sourceIp?: string
  /** the refusal was recorded after the credential that obtained the URL was revoked; a folded
   * event is recorded at the end of its minute, so its attempts came between that minute's first
   * refusal and its position */
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
  /** attempts to use it that the embedded store refused (nothing stored or served) */
  refused: UrlRefusal[]
}

export const URL_TYPES: Readonly<Record<string, PresignedUrl['kind']>> = {
  UploadUrlIssued: 'upload',
  DownloadUrlIssued: 'download',
}
const ISSUED_TYPE: Record<PresignedUrl['kind'], string> = { upload: 'UploadUrlIssued', download: 'DownloadUrlIssued' }
/** events that show a presigned URL was used, the most direct first: an upload's own
 * `RecordingUploaded` (with the URL's id) where the API writes one, else the recording's
 * `RecordingStored`, which confirms that some upload URL of it was used */
const URL_USE_TYPES: Record<PresignedUrl['kind'], readonly string[]> = {
  upload: ['RecordingUploaded', 'RecordingStored'],
  download: ['RecordingDownloaded'],
}
/** the HTTP method a refused attempt names, per kind of URL (RecordingUrlRefused.method) */
const URL_METHOD: Record<PresignedUrl['kind'], string> = { upload: 'PUT', download: 'GET' }

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
export const action = (e: RecordedEvent): ReportedAction => ({
  position: e.position,
  time: e.time,
  type: e.type,
  stream: e.stream,
  id: e.id,
})

/** the URL an issuance event names, not yet matched to its uses */
export function issuedUrl(e: RecordedEvent): PresignedUrl | undefined {
  const kind = URL_TYPES[e.type]
  const d = (e.data ?? {}) as Record<string, unknown>
  const recordingId = str(d.recordingId)
  if (!kind || !recordingId) return undefined
  const urlId = str(d.urlId)
  const householdId = str(d.householdId)
  return {
    kind,
    recordingId,
    ...(householdId ? { householdId } : {}),
    ...(urlId ? { urlId } : {}),
    issuedAt: e.time,
    until: str(d.until) ?? e.time,
    position: e.position,
    used: [],
    refused: [],
  }
}

/** how an event on the URL's recording names this URL: by URL id where both carry one (inferred
 * when identical URLs, same recording and second, share it), else by the expiry it names
 * (inferred); undefined when it names another URL */
async function urlMatcher(
  log: AuditLog,
  url: PresignedUrl,
): Promise<(e: RecordedEvent) => UrlUse['match'] | undefined> {
  const twins = url.urlId
    ? (await log.events([`recording:${url.recordingId}`], {}, [ISSUED_TYPE[url.kind]])).filter(
        (e) => (e.data as Record<string, unknown>).urlId === url.urlId,
      ).length
    : 0
  return (e) => {
    const d = (e.data ?? {}) as Record<string, unknown>
    const id = str(d.urlId)
    if (url.urlId && id) return id === url.urlId ? (twins > 1 ? 'inferred' : 'url-id') : undefined
    const until = str(d.until)
    return !until || Date.parse(until) === Date.parse(url.until) ? 'inferred' : undefined
  }
}

const after = (e: RecordedEvent, revocation: Revocation | undefined): boolean =>
  revocation !== undefined && e.position > revocation.position

/** the events showing the URL was used: on its recording, after it was issued and before it
 * expired; by URL id where both events carry one, else inferred (see UrlUse) */
export async function urlUses(log: AuditLog, url: PresignedUrl, revocation: Revocation | undefined): Promise<UrlUse[]> {
  const key: AuditKey = `recording:${url.recordingId}`
  const window = { since: url.issuedAt, until: new Date(Date.parse(url.until) + 1).toISOString() }
  const found = (await log.events([key], window, URL_USE_TYPES[url.kind])).filter((e) => e.position > url.position)
  const type = URL_USE_TYPES[url.kind].find((t) => found.some((e) => e.type === t))
  const matches = await urlMatcher(log, url)
  return found
    .filter((e) => e.type === type)
    .flatMap((e): UrlUse[] => {
      const match = matches(e)
      return match ? [{ ...action(e), match, afterRevocation: after(e, revocation) }] : []
    })
}

/** the refused attempts to use the URL (`RecordingUrlRefused` of its method on its recording,
 * after it was issued), matched as its uses are. No upper bound in time: a refusal folded with
 * others is recorded at the end of its minute, which may be after the URL expired. */
export async function urlRefusals(
  log: AuditLog,
  url: PresignedUrl,
  revocation: Revocation | undefined,
): Promise<UrlRefusal[]> {
  const found = (
    await log.events([`recording:${url.recordingId}`], { since: url.issuedAt }, ['RecordingUrlRefused'])
  ).filter((e) => e.position > url.position && (e.data as Record<string, unknown>).method === URL_METHOD[url.kind])
  const matches = await urlMatcher(log, url)
  return found.flatMap((e): UrlRefusal[] => {
    const match = matches(e)
    if (!match) return []
    const d = (e.data ?? {}) as Record<string, unknown>
    const code = str(d.code)
    const sourceIp = str(e.metadata.sourceIp)
    const attempts =
      typeof d.attempts === 'number' && Number.isSafeInteger(d.attempts) && d.attempts > 0 ? d.attempts : 1
    return [
      {
        ...action(e),
        match,
        reason: str(d.reason) ?? code ?? 'unknown',
        ...(code ? { code } : {}),
        attempts,
        ...(sourceIp ? { sourceIp } : {}),
        afterRevocation: after(e, revocation),
      },
    ]
  })
}
