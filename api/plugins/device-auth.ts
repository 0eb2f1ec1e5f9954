import type { TLSSocket } from 'node:tls'
import type { FastifyRequest } from 'fastify'
import { KennelError } from '../../infra/errors.ts'
import { checkCertificate, deviceView, normalizeSerial } from '../../devices/registry.ts'
import type { SealedSource, SourceMetadata } from '../../infra/keystore/sealed-source.ts'
import type { ApiContext } from '../context.ts'
import type { DeviceAuthRefused } from '../guard/events.ts'
import { securityStream } from '../../infra/net/events.ts'
import { FoldedRefusals } from '../../infra/net/folded-refusals.ts'

// Device routes accept only a verified, unrevoked device certificate (R2, R3) and are limited
// per certificate (R6). The listener asks for a certificate but does not reject the handshake
// (parents have none), so the chain verdict is read here from the TLS socket (`socket.authorized` and
// `authorizationError`, set by Node's TLS layer when `rejectUnauthorized` is false),
// and the event history decides revocation and supersession. Device routes run it as an onRequest
// hook, before the body is parsed or validated (R4, R13).

export interface DevicePrincipal {
  deviceId: string
  serial: string
  /** where the request came from, as its events record it: sealed with the household's key for a
   * paired toy (its family's home address, R12), in clear for an unpaired one */
  source: SourceMetadata
}

declare module 'fastify' {
  interface FastifyRequest {
    device: DevicePrincipal | null
  }
}

const REFUSAL_EVENT_BLOCK_MS = 60_000

interface PeerIdentity {
  authorized: boolean
  authorizationError: unknown
  deviceId: string | undefined
  serial: string | undefined
  fingerprint: string | undefined
  /** ms since the epoch */
  notAfter: number
}

// getPeerCertificate() decodes the whole certificate (fingerprints included) on every call, about
// a third of a keep-alive request's CPU; the peer of a connection cannot change once the listener
// disables renegotiation (api/listen.ts), so it is read once per connection. Revocation and
// supersession are still checked on every request.
const peers = new WeakMap<TLSSocket, PeerIdentity | null>()

function peerOf(socket: TLSSocket): PeerIdentity | null {
  let peer = peers.get(socket)
  if (peer !== undefined) return peer
  const cert = socket.getPeerCertificate()
  peer = !cert?.subject
    ? null
    : {
        authorized: socket.authorized,
        authorizationError: socket.authorizationError,
        deviceId: typeof cert.subject.CN === 'string' ? cert.subject.CN : undefined,
        serial: typeof cert.serialNumber === 'string' ? normalizeSerial(cert.serialNumber) : undefined,
        fingerprint:
          typeof cert.fingerprint256 === 'string' ? cert.fingerprint256.replace(/:/g, '').toLowerCase() : undefined,
        notAfter: Date.parse(cert.valid_to),
      }
  peers.set(socket, peer)
  return peer
}

export function authenticateDevice(ctx: ApiContext) {
  const append = (_req: FastifyRequest, event: DeviceAuthRefused, metadata: Record<string, string>): Promise<void> =>
    ctx.store.append(securityStream(ctx.now()), [{ ...event, metadata }]).then(() => undefined)
  // one event per certificate (or, untrusted, address) and reason per block; the rest of a burst is counted (R11)
  const folded = new FoldedRefusals<{
    req: FastifyRequest
    event: DeviceAuthRefused
    metadata: Record<string, string>
  }>(REFUSAL_EVENT_BLOCK_MS, ({ req, event, metadata }, attempts) =>
    append(req, { ...event, data: { ...event.data, attempts } }, metadata).catch((err: unknown) =>
      req.log.error({ err }, 'could not record refused device authentications'),
    ),
  )
  async function refuse(
    req: FastifyRequest,
    reason: string,
    code: 'KENNEL_ERR_CERT_INVALID' | 'KENNEL_ERR_CERT_REVOKED' | 'KENNEL_ERR_DEVICE_REVOKED',
    message: string,
    peer?: Partial<PeerIdentity>,
  ): Promise<never> {
    ctx.metrics.authFailures.inc({ kind: `device-${reason}` })
    const { deviceId, serial, fingerprint } = peer ?? {}
    const event: DeviceAuthRefused = {
      type: 'DeviceAuthRefused',
      data: {
        reason,
        ip: req.ip,
        route: req.routeOptions.url ?? '',
        ...(deviceId ? { deviceId } : {}),
        ...(serial ? { serial } : {}),
        ...(fingerprint ? { fingerprint } : {}),
        attempts: 1,
      },
    }
    const metadata = {
      actor: deviceId ? `device:${deviceId}` : 'anonymous',
      ...(serial ? { credential: `cert:${serial}` } : {}),
      sourceIp: req.ip,
    }
    if (folded.count(`${serial ?? req.ip}:${reason}`, ctx.now().getTime(), { req, event, metadata }))
      await append(req, event, metadata)
    throw new KennelError(code, message)
  }

  return Object.assign(deviceAuth, {
    flush: () => folded.flush(),
  })

  async function deviceAuth(req: FastifyRequest): Promise<void> {
    const socket = req.raw.socket as Partial<TLSSocket>
    if (!socket.encrypted || typeof socket.getPeerCertificate !== 'function')
      return refuse(
        req,
        'no-tls',
        'KENNEL_ERR_CERT_INVALID',
        "device routes need HTTPS with the toy's client certificate",
      )
    const peer = peerOf(socket as TLSSocket)
    if (!peer) return refuse(req, 'no-certificate', 'KENNEL_ERR_CERT_INVALID', 'no client certificate was presented')
    const { deviceId, serial } = peer
    if (!peer.authorized || !deviceId || !serial) {
      // an untrusted certificate's serial and CN are the presenter's claim: only its fingerprint is recorded
      return refuse(
        req,
        `untrusted:${String(peer.authorizationError ?? 'no-subject')}`,
        'KENNEL_ERR_CERT_INVALID',
        `the client certificate is not trusted (${String(peer.authorizationError ?? 'no subject')})`,
        { fingerprint: peer.fingerprint },
      )
    }
    // the chain was verified at the handshake; a keep-alive connection must not outlive the certificate
    if (!(ctx.now().getTime() <= peer.notAfter))
      return refuse(
        req,
        'untrusted:CERT_HAS_EXPIRED',
        'KENNEL_ERR_CERT_INVALID',
        'the client certificate is not trusted (CERT_HAS_EXPIRED)',
        peer,
      )
    const verdict = checkCertificate(ctx.docs, deviceId, serial, ctx.now())
    if (!verdict.ok) {
      const revoked = verdict.reason === 'device-revoked' || verdict.reason === 'certificate-revoked'
      return refuse(
        req,
        verdict.reason,
        verdict.reason === 'device-revoked'
          ? 'KENNEL_ERR_DEVICE_REVOKED'
          : revoked
            ? 'KENNEL_ERR_CERT_REVOKED'
            : 'KENNEL_ERR_CERT_INVALID',
        `the client certificate is not accepted: ${verdict.reason}`,
        peer,
      )
    }
    await ctx.deviceLimiter.admit(req, serial, {
      data: { deviceId, serial },
      metadata: { actor: `device:${deviceId}`, credential: `cert:${serial}`, sourceIp: req.ip },
    })
    req.device = {
      deviceId,
      serial,
      source: await ctx.householdSources.source(deviceView(ctx.docs, deviceId)?.householdId, req.ip),
    }
  }
}

export function devicePrincipal(req: FastifyRequest): DevicePrincipal {
  if (!req.device) throw new KennelError('KENNEL_ERR_CERT_INVALID', 'no device certificate')
  return req.device
}

export function deviceMetadata(req: FastifyRequest): Record<string, string> {
  const d = devicePrincipal(req)
  return { actor: `device:${d.deviceId}`, credential: `cert:${d.serial}`, ...d.source, correlationId: req.id }
}

/** the toy's address for the devices context's deps (devices/device-store.ts metadataOf) */
export function deviceSource(req: FastifyRequest): { sourceIp?: string; sealedSource?: SealedSource } {
  const { source } = devicePrincipal(req)
  return 'sourceIp' in source
    ? { sourceIp: source.sourceIp }
    : 'sourceIpSealed' in source
      ? { sealedSource: source as SealedSource }
      : {}
}
