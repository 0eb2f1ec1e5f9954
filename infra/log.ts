import pino, { type Logger } from 'pino'

export type { Logger }

// Structured logs on stdout (pino). Key material never reaches a logger: the redact paths are a
// second line of defence for objects that carry one by mistake.
export function createLogger(level: string, name = 'kennel'): Logger {
  return pino({
    name,
    level,
    redact: { paths: ['*.privateKey', '*.key', '*.password', '*.token', '*.claimCode', 'privateKey', 'password', 'token', 'claimCode', 'req.headers.authorization'], censor: '[redacted]' },
  })
}
