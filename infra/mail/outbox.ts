import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import nodemailer from 'nodemailer'
import type { Mail, Mailer } from './port.ts'

// Development and test: each mail is written as an RFC 5322 message (the .eml a mail client
// opens) to <data dir>/outbox/, built by nodemailer's stream transport exactly as SMTP would send
// it. The files hold personal data and confirmation tokens: the directory is 0700, each file 0600.

export const outboxDir = (dataDir: string): string => path.join(dataDir, 'outbox')

export class OutboxMailer implements Mailer {
  readonly kind = 'outbox'
  private readonly transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' })

  constructor(
    private readonly dir: string,
    private readonly from: string,
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  }

  async send(mail: Mail): Promise<void> {
    const info = await this.transport.sendMail({ from: this.from, to: mail.to, subject: mail.subject, text: mail.text })
    // names sort by the time they were written
    const file = path.join(
      this.dir,
      `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(6).toString('hex')}.eml`,
    )
    await fs.promises.writeFile(file, info.message as Buffer, { flag: 'wx', mode: 0o600 })
  }

  async close(): Promise<void> {
    this.transport.close()
  }
}

export interface OutboxMessage {
  file: string
  /** header names in lower case, folded lines joined */
  headers: Record<string, string>
  /** the decoded text body */
  text: string
}

/** The mails in an outbox, oldest first (what the demo and the tests read instead of a mailbox). */
export function readOutbox(dir: string): OutboxMessage[] {
  if (!fs.existsSync(dir)) return []
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.eml'))
    .sort()
    .map((f) => parseMessage(path.join(dir, f), fs.readFileSync(path.join(dir, f), 'utf8')))
}

function parseMessage(file: string, raw: string): OutboxMessage {
  const split = raw.indexOf('\r\n\r\n')
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ')
  const headers: Record<string, string> = {}
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const body = raw.slice(split + 4)
  const encoding = (headers['content-transfer-encoding'] ?? '7bit').toLowerCase()
  const bytes =
    encoding === 'base64'
      ? Buffer.from(body, 'base64')
      : encoding === 'quoted-printable'
        ? quotedPrintable(body)
        : Buffer.from(body, 'utf8')
  return { file, headers, text: bytes.toString('utf8').replace(/\r\n/g, '\n') }
}

// RFC 2045 6.7: "=" CRLF is a soft line break, "=XX" an octet
function quotedPrintable(body: string): Buffer {
  const joined = body.replace(/=\r\n/g, '')
  const out: number[] = []
  for (let i = 0; i < joined.length; i++) {
    const hex = joined.slice(i + 1, i + 3)
    if (joined[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16))
      i += 2
    } else out.push(...Buffer.from(joined[i]!, 'utf8'))
  }
  return Buffer.from(out)
}
