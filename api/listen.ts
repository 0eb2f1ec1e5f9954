import { STATUS_CODES } from 'node:http'
import https from 'node:https'
import type { Duplex } from 'node:stream'
import type { AddressInfo, Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../infra/config.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { compileDenylist } from '../infra/net/denylist.ts'
import { serverTlsOptions } from '../infra/net/tls.ts'
import { type ConnectionCapExceeded, type ConnectionDenylisted, securityStream } from '../infra/net/events.ts'
import { FoldedRefusals } from '../infra/net/folded-refusals.ts'
import { lingerOnClose } from '../infra/net/linger.ts'
import { KennelError } from '../infra/errors.ts'
import { securityHeaders } from './plugins/security-headers.ts'
import { UnauthenticatedConnections } from '../infra/net/unauthenticated.ts'
import type { ApiMetrics } from './metrics.ts'

// Puts a built API on HTTPS (R2, R9, R18). Parents connect without a
// certificate and toys with theirs, so the server requests one but does not reject the handshake;
// device routes read the verdict (api/plugins/device-auth.ts). Until its first request head has
// arrived a connection counts toward its source's cap and has a deadline from accept
// (infra/net/unauthenticated.ts): Node's headersTimeout never closes a TLS connection that
// sends nothing, and is checked only every 30 s for the others.

export interface ListenOptions {
  config: Config
  tls: { cert: string; key: string }
  /** DeviceCa.trustedPem: the CAs a device certificate may chain to */
  trustedCaPem: string
  store: EventStore
  metrics: ApiMetrics
  log?: Logger
}

export interface ListeningApi {
  port: number
  server: https.Server
  /** swap the server certificate or the trusted CAs without a restart (rollover, R18) */
  reloadTls(tls: { cert: string; key: string }, trustedCaPem: string): void
  close(): Promise<void>
}

const DENYLIST_EVENT_BLOCK_MS = 60_000

/** a denylisted connection: its address and port, and the configured CIDR it fell in */
interface Denied {
  ip: string
  port: number | undefined
  cidr: string
}

export function tlsOptions(
  config: Config,
  tls: { cert: string; key: string },
  trustedCaPem: string,
): https.ServerOptions {
  return serverTlsOptions(config, { ...tls, ca: trustedCaPem })
}

export async function listenApi(app: FastifyInstance, opts: ListenOptions): Promise<ListeningApi> {
  const { config } = opts
  await app.ready()
  const unauthenticated = createUnauthenticated(opts)
  const server = https.createServer(
    { ...tlsOptions(config, opts.tls, opts.trustedCaPem), noDelay: true, keepAlive: true },
    (req, res) => {
      unauthenticated.authenticated(req.socket)
      app.routing(req, res)
    },
  )
  server.headersTimeout = 15_000
  server.requestTimeout = 60_000
  server.keepAliveTimeout = 30_000
  const denylist = compileDenylist(config.denylist)
  const denied = new FoldedRefusals<Denied>(DENYLIST_EVENT_BLOCK_MS, (subject, hits) => recordDenied(subject, hits))
  function recordDenied({ ip, port, cidr }: Denied, hits: number): Promise<void> {
    const event: ConnectionDenylisted = {
      type: 'ConnectionDenylisted',
      data: { listener: 'api', ip, port, cidr, hits },
    }
    return opts.store
      .append(securityStream(new Date()), [{ ...event, metadata: { actor: 'anonymous', sourceIp: ip } }])
      .then(
        () => undefined,
        (err: unknown) => opts.log?.error({ err }, 'could not record a denylist hit'),
      )
  }
  // 'connection' fires on TCP accept, before the TLS handshake (R9)
  server.on('connection', (socket: Socket) => {
    const cidr = denylist(socket.remoteAddress)
    if (!cidr) return void unauthenticated.admit(socket)
    socket.destroy()
    opts.metrics.denylistHits.inc()
    const subject: Denied = { ip: socket.remoteAddress ?? 'unknown', port: socket.remotePort, cidr }
    if (denied.count(subject.ip, Date.now(), subject)) void recordDenied(subject, 1)
  })
  // a connection's client certificate is fixed for its lifetime: device-auth reads it once (R2)
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.disableRenegotiation()
    unauthenticated.secured(socket)
    // a refusal before the request body has arrived reaches the client (infra/net/linger.ts)
    lingerOnClose(socket)
  })
  server.on('tlsClientError', (err) => opts.log?.debug({ err: err.message }, 'TLS handshake failed'))
  server.on('clientError', answerClientError)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.apiPort, config.host, () => (server.off('error', reject), resolve()))
  })
  return {
    port: (server.address() as AddressInfo).port,
    server,
    reloadTls(tls, trustedCaPem) {
      server.setSecureContext(tlsOptions(config, tls, trustedCaPem))
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      unauthenticated.destroyAll()
      server.closeIdleConnections()
      // requests in flight get a moment to finish, idle keep-alive sockets do not hold the stop
      const timer = setTimeout(() => server.closeAllConnections(), 2000)
      await closed
      clearTimeout(timer)
      await denied.flush()
      await unauthenticated.flush()
      await app.close()
    },
  }
}

/** A request Node cannot parse (a malformed request line or header, both Content-Length and
 * Transfer-Encoding, a head over 16 KB) or that did not arrive in time never reaches Fastify:
 * Node answered it with a bare `400 Bad Request`, no body and none of the API's headers. It gets
 * the one error format here, then the connection closes (lingering: infra/net/linger.ts). */
export function answerClientError(err: Error & { code?: string; reason?: string }, socket: Duplex): void {
  const response = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage
  // a reset peer, or a response already on its way: nothing more can be said on this connection
  if (err.code === 'ECONNRESET' || !socket.writable || response?.headersSent) return void socket.destroy()
  const ke =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new KennelError(
          'KENNEL_ERR_HEADERS_TOO_LARGE',
          'the request head (request line and headers) is larger than 16 KB',
        )
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new KennelError('KENNEL_ERR_REQUEST_TIMEOUT', 'the request did not arrive whole in time')
        : new KennelError(
            'KENNEL_ERR_VALIDATION',
            `malformed HTTP request: ${(err.reason ?? err.code ?? 'unparseable').slice(0, 200)}`,
          )
  const body = JSON.stringify(ke.toJSON())
  const headers = {
    connection: 'close',
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    ...securityHeaders,
  }
  socket.write(
    `HTTP/1.1 ${ke.httpStatus} ${STATUS_CODES[ke.httpStatus]}\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n${body}`,
  )
  const s = socket as Duplex & { destroySoon?: () => void }
  if (s.destroySoon) s.destroySoon()
  else socket.end()
}

/** the deadlines and per-source cap before a first request (R9), with metrics and ConnectionCapExceeded events */
function createUnauthenticated(opts: ListenOptions): UnauthenticatedConnections {
  const { config, metrics } = opts
  const connections = new UnauthenticatedConnections(
    {
      handshakeTimeoutMs: config.tlsHandshakeTimeoutSeconds * 1000,
      connectTimeoutMs: config.connectTimeoutSeconds * 1000,
      maxPerSource: config.unauthenticatedPerIp,
    },
    {
      onRefused: () => metrics.unauthenticatedRefused.inc(),
      record({ ip, source, cap }, refusals) {
        const event: ConnectionCapExceeded = {
          type: 'ConnectionCapExceeded',
          data: { listener: 'api', ip, source, cap, refusals },
        }
        return opts.store
          .append(securityStream(new Date()), [{ ...event, metadata: { actor: 'anonymous', sourceIp: ip } }])
          .then(
            () => undefined,
            (err: unknown) => opts.log?.error({ err }, 'could not record refused connections'),
          )
      },
      onTimeout(phase, ip) {
        metrics.connectTimeouts.inc({ phase })
        opts.log?.debug({ phase, ip }, 'connection closed: no request in time')
      },
    },
  )
  metrics.countUnauthenticated = () => connections.size
  return connections
}
