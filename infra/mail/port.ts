// The mailer port: how kennel sends e-mail (sign-up confirmation). Adapters: SMTP over TLS
// (smtp.ts, production) and the development outbox, one RFC 5322 .eml file per mail (outbox.ts).
// The sender is the adapter's (KENNEL_MAIL_FROM); messages are plain text.

export interface Mail {
  to: string
  subject: string
  text: string
}

export interface Mailer {
  readonly kind: 'smtp' | 'outbox'
  /** resolves once the mail was accepted (by the SMTP server, or written to the outbox) */
  send(mail: Mail): Promise<void>
  close(): Promise<void>
}
