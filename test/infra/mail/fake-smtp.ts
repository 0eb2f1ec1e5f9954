import net from 'node:net'
import tls from 'node:tls'
import type { AddressInfo } from 'node:net'

// A minimal SMTP server for the mailer's tests (RFC 5321 dialogue, RFC 3207 STARTTLS, RFC 8314
// implicit TLS): it records each command with whether it arrived over TLS, and the message data.

export interface FakeSmtp {
  port: number
  commands: Array<{ line: string; tls: boolean }>
  messages: string[]
  close(): Promise<void>
}

export async function fakeSmtp(opts: {
  tls: { key: string; cert: string }
  mode: 'starttls' | 'no-starttls' | 'implicit'
}): Promise<FakeSmtp> {
  const commands: FakeSmtp['commands'] = []
  const messages: string[] = []
  const sockets = new Set<net.Socket>()

  function serve(socket: net.Socket, secure: boolean): void {
    sockets.add(socket)
    socket.on('error', () => undefined)
    let buffered = ''
    let data: string | undefined
    const reply = (text: string) => socket.write(`${text}\r\n`)
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('latin1')
      let end: number
      while ((end = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, end)
        buffered = buffered.slice(end + 2)
        if (data !== undefined) {
          if (line === '.') {
            messages.push(data)
            data = undefined
            reply('250 queued')
          } else data += `${line}\r\n`
          continue
        }
        commands.push({ line, tls: secure })
        const verb = line.split(' ')[0]!.toUpperCase()
        if (verb === 'EHLO') {
          const offers = [
            ...(opts.mode === 'starttls' && !secure ? ['STARTTLS'] : []),
            ...(secure ? ['AUTH PLAIN LOGIN'] : []),
          ]
          reply(['250-fake.test', ...offers.map((o) => `250-${o}`), '250 8BITMIME'].join('\r\n'))
        } else if (verb === 'STARTTLS' && opts.mode === 'starttls' && !secure) {
          reply('220 go ahead')
          socket.off('data', onData)
          serve(new tls.TLSSocket(socket, { isServer: true, ...opts.tls }), true)
          return
        } else if (verb === 'AUTH') reply('235 accepted')
        else if (verb === 'MAIL' || verb === 'RCPT') reply('250 ok')
        else if (verb === 'DATA') (data = ''), reply('354 go on')
        else if (verb === 'QUIT') reply('221 bye'), socket.end()
        else reply('502 not implemented')
      }
    }
    socket.on('data', onData)
    if (!(secure && opts.mode === 'starttls')) reply('220 fake.test ESMTP')
  }

  const server =
    opts.mode === 'implicit'
      ? tls.createServer(opts.tls, (s) => serve(s, true))
      : net.createServer((s) => serve(s, false))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    commands,
    messages,
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}
