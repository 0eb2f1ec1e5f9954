import type { Socket } from 'node:net'

// A lingering close for HTTP connections the server closes while the client may still be sending
// (RFC 9112 §9.6). When a response refuses a request before its body has arrived (413 for a
// body over the limit, 415, 401 before the body is read), Fastify answers with
// `Connection: close` and Node closes the socket as soon as the response is written
// (`socket.destroySoon`). The bytes the client is still sending then reach a closed socket, the
// kernel answers them with a TCP reset, and the client's kernel throws away the response it had
// not read yet: curl reported "Send failure: Broken pipe" or no status at all for about half of
// the 50 MB uploads refused with 413. Instead the server ends its side (TLS close_notify and FIN
// after the response), keeps reading and discarding what the client still sends, and closes
// once the client closes its side or after `lingerMs`, whichever comes first.

export const LINGER_MS = 2000

export function lingerOnClose(socket: Socket, lingerMs = LINGER_MS): void {
  socket.destroySoon = function destroySoonLingering(this: Socket): void {
    if (this.destroyed) return
    if (this.writable) this.end()
    if (this.readableEnded) return void this.destroy()
    const timer = setTimeout(() => this.destroy(), lingerMs)
    timer.unref()
    this.once('close', () => clearTimeout(timer))
    // the client's FIN (or a reset): nothing more to discard
    this.once('end', () => this.destroy())
    this.on('data', () => undefined)
    this.resume()
  }
}
