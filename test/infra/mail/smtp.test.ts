import t, { type Test } from 'tap'
import { SmtpMailer } from '../../../infra/mail/smtp.ts'
import { loadServerTls } from '../../../devices/server-tls.ts'
import { createTestPki } from '../../helpers/pki.ts'
import { fakeSmtp } from './fake-smtp.ts'

// The SMTP adapter never sends in plaintext: smtp:// must upgrade with STARTTLS (RFC 3207) and
// smtps:// is TLS from the start (RFC 8314); the server's certificate is verified. A server (or a
// man in the middle) that offers no STARTTLS gets neither the credentials nor the message.

const mail = { to: 'parent@example.org', subject: 'Confirm your kennel account', text: 'token kv_abc' }

async function serverTls(t: Test) {
  const pki = await createTestPki(t)
  return { tls: await loadServerTls(pki.config, pki.ca), ca: pki.ca.trustedPem }
}

t.test('smtp:// upgrades with STARTTLS before it authenticates or sends anything', async (t) => {
  const { tls, ca } = await serverTls(t)
  const server = await fakeSmtp({ tls, mode: 'starttls' })
  t.teardown(() => server.close())
  const mailer = new SmtpMailer({
    url: `smtp://kennel:s%40cret@localhost:${server.port}`,
    from: 'kennel <no-reply@toys.example>',
    ca,
  })
  t.teardown(() => mailer.close())
  await mailer.send(mail)
  const verbs = server.commands.map((c) => `${c.line.split(' ')[0]}${c.tls ? '+tls' : ''}`)
  t.same(verbs.slice(0, 3), ['EHLO', 'STARTTLS', 'EHLO+tls'])
  t.ok(
    server.commands.filter((c) => /^(AUTH|MAIL|RCPT|DATA)/.test(c.line)).every((c) => c.tls),
    'credentials and message only over TLS',
  )
  const auth = server.commands.find((c) => c.line.startsWith('AUTH PLAIN'))!.line.split(' ')[2]!
  t.equal(Buffer.from(auth, 'base64').toString(), '\u0000kennel\u0000s@cret', 'credentials from the URL')
  t.equal(server.messages.length, 1)
  t.match(server.messages[0], /^From: kennel <no-reply@toys\.example>\r$/m)
  t.match(server.messages[0], /^To: parent@example\.org\r$/m)
  t.match(server.messages[0], /^Subject: Confirm your kennel account\r$/m)
})

t.test('smtp:// to a server without STARTTLS is refused: no credentials, no message', async (t) => {
  const { tls, ca } = await serverTls(t)
  const server = await fakeSmtp({ tls, mode: 'no-starttls' })
  t.teardown(() => server.close())
  const mailer = new SmtpMailer({
    url: `smtp://kennel:secret@localhost:${server.port}`,
    from: 'kennel <no-reply@toys.example>',
    ca,
  })
  t.teardown(() => mailer.close())
  await t.rejects(mailer.send(mail), { code: 'KENNEL_ERR_UNAVAILABLE' })
  t.notOk(
    server.commands.some((c) => /^(AUTH|MAIL|RCPT|DATA)/.test(c.line)),
    `nothing but ${server.commands.map((c) => c.line.split(' ')[0]).join(', ')}`,
  )
  t.same(server.messages, [])
})

t.test('the server certificate is verified: an untrusted one gets no credentials', async (t) => {
  const { ca } = await serverTls(t)
  const other = await serverTls(t)
  const server = await fakeSmtp({ tls: other.tls, mode: 'starttls' })
  t.teardown(() => server.close())
  const mailer = new SmtpMailer({
    url: `smtp://kennel:secret@localhost:${server.port}`,
    from: 'kennel <no-reply@toys.example>',
    ca,
  })
  t.teardown(() => mailer.close())
  await t.rejects(mailer.send(mail), { code: 'KENNEL_ERR_UNAVAILABLE' })
  t.notOk(server.commands.some((c) => /^(AUTH|MAIL|RCPT|DATA)/.test(c.line)))
  t.same(server.messages, [])
})

t.test('smtps:// is TLS from the first byte', async (t) => {
  const { tls, ca } = await serverTls(t)
  const server = await fakeSmtp({ tls, mode: 'implicit' })
  t.teardown(() => server.close())
  const mailer = new SmtpMailer({
    url: `smtps://kennel:secret@localhost:${server.port}`,
    from: 'kennel <no-reply@toys.example>',
    ca,
  })
  t.teardown(() => mailer.close())
  await mailer.send(mail)
  t.ok(server.commands.length > 0 && server.commands.every((c) => c.tls), 'every command over TLS')
  t.equal(server.messages.length, 1)
})
