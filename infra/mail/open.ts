import type { Config } from '../config.ts'
import { OutboxMailer, outboxDir } from './outbox.ts'
import type { Mailer } from './port.ts'
import { SmtpMailer } from './smtp.ts'

/** SMTP when KENNEL_SMTP_URL is set (production requires it, infra/config.ts), otherwise the
 * development outbox in the data dir. */
export function openMailer(config: Pick<Config, 'smtpUrl' | 'mailFrom' | 'dataDir'>): Mailer {
  return config.smtpUrl !== undefined
    ? new SmtpMailer({ url: config.smtpUrl, from: config.mailFrom })
    : new OutboxMailer(outboxDir(config.dataDir), config.mailFrom)
}
