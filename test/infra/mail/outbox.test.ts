import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { OutboxMailer, readOutbox } from '../../../infra/mail/outbox.ts'

// The development outbox: each mail an RFC 5322 message in its own private file.

t.test('each mail is an RFC 5322 .eml file, private to its owner, read back as sent', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-outbox-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const outbox = path.join(dir, 'outbox')
  const mailer = new OutboxMailer(outbox, 'kennel <no-reply@toys.example>')
  t.teardown(() => mailer.close())
  const long = `kv_${'A'.repeat(120)}`
  await mailer.send({
    to: 'parent@example.org',
    subject: 'Confirm your kennel account',
    text: `Your token:\n\n${long}\n\nGrüße`,
  })
  await mailer.send({ to: 'other@example.org', subject: 'Second', text: 'two' })

  t.equal(fs.statSync(outbox).mode & 0o777, 0o700, 'the outbox is 0700')
  const mails = readOutbox(outbox)
  t.equal(mails.length, 2)
  for (const m of mails) t.equal(fs.statSync(m.file).mode & 0o777, 0o600, `${path.basename(m.file)} is 0600`)
  const [first, second] = mails
  const raw = fs.readFileSync(first!.file, 'utf8')
  t.ok(raw.split('\r\n\r\n')[0]!.split('\r\n').length > 4 && !/[^\r]\n/.test(raw), 'CRLF line endings (RFC 5322 2.1)')
  t.match(first!.headers, {
    from: 'kennel <no-reply@toys.example>',
    to: 'parent@example.org',
    subject: 'Confirm your kennel account',
    'mime-version': '1.0',
  })
  t.match(first!.headers['message-id'], /^<[^@\s]+@[^>\s]+>$/)
  t.ok(!Number.isNaN(Date.parse(first!.headers.date!)), 'a Date header')
  t.ok(first!.text.includes(long), 'a long token survives line wrapping')
  t.ok(first!.text.includes('Grüße'), 'non-ASCII text decoded')
  t.equal(second!.headers.to, 'other@example.org', 'oldest first')
})
