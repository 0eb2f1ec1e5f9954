import type { Aedes, AedesPublishPacket } from 'aedes'
import { canReceive } from '../authorize.ts'
import type { HookContext } from './context.ts'

// Aedes `authorizeForward` (R4): every delivery to a toy is checked again on the way out
// (authorize.ts canReceive), since a persistent session's subscriptions outlive the rules they
// were granted under.

export function forwardHook(ctx: HookContext): Aedes['authorizeForward'] {
  const { sessions, metrics } = ctx
  return (client, packet: AedesPublishPacket) => {
    const session = sessions.get(client)
    if (session && canReceive(session.identity.deviceId, packet.topic)) return packet
    metrics.denials.inc({ kind: 'forward' })
    return null
  }
}
