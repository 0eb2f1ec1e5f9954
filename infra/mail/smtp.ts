import nodemailer, { type Transporter } from 'nodemailer'
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js'
import { KennelError } from '../errors.ts'
import type { Mail, Mailer } from './port.ts'

// SMTP through nodemailer, never in plaintext: smtps:// is TLS from the first byte (RFC 8314),
// smtp:// must upgrade with STARTTLS (RFC 3207) or the mail is not sent (`requireTLS`: a server,
// or a man in the middle, that does not offer STARTTLS gets no credentials and no message). The
// server's certificate is verified; TLS 1.2 at least (R18). The URL is parsed here rather than
// handed to nodemailer, whose URL parser would accept options such as `?ignoreTLS=true`.

export interface SmtpOptions {
  /** smtps://user:pass@host[:465] or smtp://user:pass@host[:587] */
  url: string
  from: string
  /** extra CAs to trust for the server's certificate (a private relay; tests) */
  ca?: string
}

export function smtpTransportOptions(opts: SmtpOptions): SMTPTransport.Options {
  const u = new URL(opts.url)
  if (u.protocol !== 'smtps:' && u.protocol !== 'smtp:')
    throw new KennelError('KENNEL_ERR_CONFIG', 'the SMTP URL must start with smtps:// or smtp://')
  const secure = u.protocol === 'smtps:'
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? (secure ? 465 : 587) : Number(u.port),
    secure,
    requireTLS: true,
    ignoreTLS: false,
    ...(u.username !== ''
      ? { auth: { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } }
      : {}),
    tls: {
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      servername: u.hostname,
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
    },
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  }
}

export class SmtpMailer implements Mailer {
  readonly kind = 'smtp'
  private readonly transport: Transporter<SMTPTransport.SentMessageInfo>

  constructor(private readonly opts: SmtpOptions) {
    this.transport = nodemailer.createTransport(smtpTransportOptions(opts))
  }

  async send(mail: Mail): Promise<void> {
    try {
      await this.transport.sendMail({ from: this.opts.from, to: mail.to, subject: mail.subject, text: mail.text })
    } catch (err) {
      throw new KennelError(
        'KENNEL_ERR_UNAVAILABLE',
        `the mail server did not accept the message (${(err as Error).message})`,
        undefined,
        { cause: err },
      )
    }
  }

  async close(): Promise<void> {
    this.transport.close()
  }
}
