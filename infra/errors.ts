// The one catalogue of coded errors. Domain code throws KennelError with a code from
// here; the API's error handler maps it to an HTTP status and the JSON body
// {"error":{"code","message"}}, the CLI to a message on stderr and an exit code, the broker to a
// CONNACK return code. Nothing outside this file decides those numbers.

interface ErrorSpec {
  http: number
  exit: number
  /** MQTT 3.1.1 CONNACK return code, where the error can end a CONNECT. */
  connack?: 2 | 3 | 4 | 5
}

export const errorCatalogue = {
  // configuration and environment (R7, R8)
  KENNEL_ERR_CONFIG: { http: 500, exit: 78 },
  KENNEL_ERR_ENVIRONMENT_MISMATCH: { http: 500, exit: 78 },
  KENNEL_ERR_INSECURE_KEY_FILE: { http: 500, exit: 78 },
  KENNEL_ERR_DEVELOPMENT_MATERIAL: { http: 500, exit: 78 },
  /** a listener cannot bind its configured address (in use, privileged port, not this host's) */
  KENNEL_ERR_CANNOT_LISTEN: { http: 500, exit: 78 },
  /** the data directory cannot be created or written (permissions, read-only, a file in the way) */
  KENNEL_ERR_DATA_DIR: { http: 500, exit: 73 },
  // generic input
  KENNEL_ERR_VALIDATION: { http: 400, exit: 64 },
  KENNEL_ERR_NOT_FOUND: { http: 404, exit: 66 },
  KENNEL_ERR_PAYLOAD_TOO_LARGE: { http: 413, exit: 64 },
  /** a request head over Node's header size limit (16 KB) */
  KENNEL_ERR_HEADERS_TOO_LARGE: { http: 431, exit: 64 },
  /** a request that did not arrive whole within the API's request timeout */
  KENNEL_ERR_REQUEST_TIMEOUT: { http: 408, exit: 75 },
  KENNEL_ERR_UNSUPPORTED_MEDIA_TYPE: { http: 415, exit: 64 },
  KENNEL_ERR_INTERNAL: { http: 500, exit: 70 },
  /** CONNACK 3, server unavailable: a CONNECT whose DeviceConnected cannot be recorded */
  KENNEL_ERR_UNAVAILABLE: { http: 503, exit: 69, connack: 3 },
  // event store
  KENNEL_ERR_WRONG_EXPECTED_REVISION: { http: 409, exit: 75 },
  KENNEL_ERR_DUPLICATE_EVENT: { http: 409, exit: 75 },
  KENNEL_ERR_EVENTSTORE_CLOSED: { http: 503, exit: 69 },
  KENNEL_ERR_EVENTSTORE_URL: { http: 500, exit: 78 },
  /** another node runs on this embedded store (its lock file names the host and pid) */
  KENNEL_ERR_STORE_IN_USE: { http: 503, exit: 75 },
  // device identity (R1, R3)
  KENNEL_ERR_DEVICE_ID_INVALID: { http: 400, exit: 65, connack: 2 },
  KENNEL_ERR_DEVICE_EXISTS: { http: 409, exit: 73 },
  KENNEL_ERR_DEVICE_UNKNOWN: { http: 404, exit: 66, connack: 5 },
  KENNEL_ERR_DEVICE_REVOKED: { http: 403, exit: 77, connack: 5 },
  KENNEL_ERR_CSR_INVALID: { http: 400, exit: 65 },
  KENNEL_ERR_CSR_SIGNATURE: { http: 400, exit: 65 },
  KENNEL_ERR_CSR_WEAK_KEY: { http: 400, exit: 65 },
  KENNEL_ERR_CSR_ALGORITHM: { http: 400, exit: 65 },
  KENNEL_ERR_CSR_SUBJECT: { http: 400, exit: 65 },
  KENNEL_ERR_CERT_INVALID: { http: 401, exit: 65, connack: 5 },
  KENNEL_ERR_CERT_REVOKED: { http: 403, exit: 77, connack: 5 },
  KENNEL_ERR_CERT_UNKNOWN: { http: 404, exit: 66 },
  KENNEL_ERR_CA: { http: 500, exit: 78 },
  KENNEL_ERR_CLAIM_CODE_INVALID: { http: 400, exit: 65 },
  KENNEL_ERR_CLAIM_CODE_EXPIRED: { http: 410, exit: 65 },
  KENNEL_ERR_CLAIM_CODE_USED: { http: 409, exit: 65 },
  KENNEL_ERR_DEVICE_CLAIMED: { http: 409, exit: 73 },
  // broker (R2, R4, R6, R9)
  KENNEL_ERR_CLIENT_ID_MISMATCH: { http: 400, exit: 65, connack: 2 },
  KENNEL_ERR_TOPIC_DENIED: { http: 403, exit: 77, connack: 5 },
  KENNEL_ERR_DENYLISTED: { http: 403, exit: 77, connack: 5 },
  // API, accounts and sessions (R4, R6, R13, R15)
  KENNEL_ERR_UNAUTHENTICATED: { http: 401, exit: 77, connack: 4 },
  KENNEL_ERR_FORBIDDEN: { http: 403, exit: 77, connack: 5 },
  KENNEL_ERR_RATE_LIMITED: { http: 429, exit: 75, connack: 3 },
  KENNEL_ERR_WEAK_PASSWORD: { http: 400, exit: 65 },
  /** the right password, but the address was not confirmed yet (POST /v1/accounts/verify) */
  KENNEL_ERR_ACCOUNT_UNVERIFIED: { http: 403, exit: 77 },
  KENNEL_ERR_VERIFICATION_INVALID: { http: 400, exit: 65 },
  KENNEL_ERR_VERIFICATION_EXPIRED: { http: 410, exit: 65 },
  KENNEL_ERR_VERIFICATION_USED: { http: 409, exit: 65 },
  KENNEL_ERR_LOGIN_FAILED: { http: 401, exit: 77 },
  /** a bearer token alone is not enough (erasure, export): the password must be given again (api/accounts/reauth.ts) */
  KENNEL_ERR_REAUTH_REQUIRED: { http: 403, exit: 77 },
  KENNEL_ERR_ROLE_INVALID: { http: 400, exit: 64 },
  // recordings and blobs (R5, R12)
  KENNEL_ERR_URL_EXPIRED: { http: 403, exit: 77 },
  KENNEL_ERR_URL_SIGNATURE: { http: 403, exit: 77 },
  KENNEL_ERR_RECORDING_INCOMPLETE: { http: 409, exit: 65 },
  KENNEL_ERR_RECORDING_SIZE_MISMATCH: { http: 409, exit: 65 },
  /** the content's SHA-256 is not the one declared for the upload or recorded at completion */
  KENNEL_ERR_RECORDING_HASH_MISMATCH: { http: 409, exit: 65 },
  /** an upload URL writes its object once */
  KENNEL_ERR_URL_USED: { http: 409, exit: 65 },
  /** the credential a URL was issued to has been revoked, or its session ended, since (R3) */
  KENNEL_ERR_URL_REVOKED: { http: 403, exit: 77 },
  KENNEL_ERR_KEY_SHREDDED: { http: 410, exit: 65 },
  // audit (R16, R17)
  KENNEL_ERR_AUDIT_TAMPERED: { http: 409, exit: 1 },
  /** a stored event that cannot be read back (its JSON was edited outside kennel) */
  KENNEL_ERR_EVENT_CORRUPT: { http: 500, exit: 1 },
  KENNEL_ERR_PROOF_INVALID: { http: 400, exit: 1 },
  KENNEL_ERR_CREDENTIAL_INVALID: { http: 400, exit: 64 },
  // production deployment definition (R14)
  KENNEL_ERR_DEPLOY_DEFINITION: { http: 400, exit: 65 },
  KENNEL_ERR_DEPLOY_UNSAFE: { http: 409, exit: 1 },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof errorCatalogue

export class KennelError extends Error {
  readonly code: ErrorCode
  readonly details: Record<string, unknown> | undefined

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
    this.details = details
  }

  get httpStatus(): number {
    return errorCatalogue[this.code].http
  }

  get exitCode(): number {
    return errorCatalogue[this.code].exit
  }

  /** CONNACK return code for this error (5 = not authorized when the catalogue names none). */
  get connackCode(): number {
    const spec: ErrorSpec = errorCatalogue[this.code]
    return spec.connack ?? 5
  }

  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } }
  }
}

export function isKennelError(err: unknown, code?: ErrorCode): err is KennelError {
  return err instanceof KennelError && (code === undefined || err.code === code)
}
