import type { Socket } from 'node:net'

// A lingering close for connections the server closes while the client may still be sending
// (RFC 9112 §9.6). Closed at once with bytes it has not read, a socket makes the kernel reset
// the connection, and a reset throws away what the server had just written and the client had
// not read yet: the refusal itself. Instead the server ends its side (TLS close_notify and FIN
// after what it wrote), keeps reading and discarding what the client still sends, and closes
// once the client closes its side or after `lingerMs`, whichever comes first.
//
// HTTPS (api/listen.ts): a response that refuses a request before its body has arrived (413
// for a body over the limit) carries `Connection: close`, and Node closes the socket with
// `socket.destroySoon()` once it is written: curl reported "Send failure: Broken pipe" or no
// status at all for about half of the 50 MB uploads refused with 413.

export const LINGER_MS = 2000

function linger(socket: Socket, destroy: () => void, lingerMs: number): void {
  if (socket.writable) socket.end()
  if (socket.readableEnded) return destroy()
  const timer = setTimeout(destroy, lingerMs)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
  // the client's FIN: nothing more to discard
  socket.once('end', destroy)
  socket.on('data', () => undefined)
  socket.resume()
}

/** Node's HTTP server closes a `Connection: close` response's socket with `destroySoon` */
export function lingerOnClose(socket: Socket, lingerMs = LINGER_MS): void {
  socket.destroySoon = function destroySoonLingering(this: Socket): void {
    if (!this.destroyed) linger(this, () => this.destroy(), lingerMs)
  }
}
