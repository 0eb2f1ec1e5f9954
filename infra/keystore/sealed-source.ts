import { createHmac } from 'node:crypto'
import { isIP } from 'node:net'
import { KennelError } from '../errors.ts'
import { type KeyRing, open, seal } from '../blobstore/keys.ts'

// Where a network peer was, in an event's metadata, when that address is personal data (R12,
// docs/EVENTS.md "Personal data in events"): sealed with the key of the person or household it
// belongs to, so that shredding that key erases it from the whole history. One shape for both:
// `sourceIpSealed` (AES-256-GCM, bound to `source-ip:{owner}`) and `sourceIpTag` (an HMAC of the
// address under the same key: tells the owner's addresses apart without showing them, and means
// nothing once the key is shredded). `sourceIpOwner` names the key: absent, the person of the
// event's `actor` (`account:{id}`); `household:{id}`, that household's key (a paired toy's
// address: the family's home address on the internet).

export interface SealedSource {
  sourceIpSealed: string
  sourceIpTag: string
  /** `household:{householdId}`; absent: the person of metadata.actor */
  sourceIpOwner?: string
}

/** what a toy's event records of its address: in clear (no household), sealed (paired), or
 * nothing (its household's key was shredded: the household is erased) */
export type SourceMetadata = { sourceIp: string } | SealedSource | Record<string, never>

const sourceLabel = (ownerId: string): string => `source-ip:${ownerId}`
export const plainIp = (ip: string): string => ip.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1')

/** seal `ip` for its owner (a person's or a household's id) with that owner's key */
export function sealSource(key: Buffer, ownerId: string, ip: string): { sourceIpSealed: string; sourceIpTag: string } {
  const addr = plainIp(ip)
  return {
    sourceIpSealed: seal(key, Buffer.from(addr), sourceLabel(ownerId)).toString('base64'),
    sourceIpTag: createHmac('sha256', key).update(`source-ip-tag\n${addr}`).digest('base64url').slice(0, 22),
  }
}

/** the address sealed by sealSource, or undefined when it does not open to one */
export function openSourceWith(key: Buffer, ownerId: string, sealed: string): string | undefined {
  const addr = open(key, Buffer.from(sealed, 'base64'), sourceLabel(ownerId)).toString('utf8')
  return isIP(addr) !== 0 ? addr : undefined
}

const HOUSEHOLD_OWNER = /^household:([A-Za-z0-9-]{1,100})$/

/** the household whose key sealed this metadata's source, if it is a household's */
export function householdOfSource(metadata: Record<string, unknown>): string | undefined {
  const owner = metadata.sourceIpOwner
  return typeof owner === 'string' ? HOUSEHOLD_OWNER.exec(owner)?.[1] : undefined
}

/** Paired toys' addresses, sealed with their household's key (the `household-data` ring, which
 * erasure shreds with the household). The broker seals one on every connect: the unwrapped key is
 * kept here for `cacheMs` (10 minutes by default, at most `maxHouseholds` of them) with the last
 * address it sealed, so the steady state (a toy reconnecting from home) costs a map lookup: no
 * key-store read, no cipher. Sealing with a key kept after the
 * household's erasure shredded it is harmless: the household's toys are revoked before its key is
 * shredded, and what such a key sealed opens nowhere once this cache lets it go. Opening always
 * asks the ring (`existingKey`), so an erased household reads `[erased]` at once. */
export class HouseholdSources {
  /** per household: its key, when it was read, and the last address sealed with it (a toy
   * reconnecting from home is given the same sealed value, which says no more than its tag) */
  private readonly keys = new Map<string, { key: Buffer; at: number; last?: { ip: string; source: SealedSource } }>()
  private readonly cacheMs: number
  private readonly maxHouseholds: number
  private readonly now: () => number

  constructor(
    private readonly ring: KeyRing,
    options: { cacheMs?: number; maxHouseholds?: number; now?: () => number } = {},
  ) {
    this.cacheMs = options.cacheMs ?? 600_000
    this.maxHouseholds = options.maxHouseholds ?? 100_000
    this.now = options.now ?? Date.now
  }

  /** what a toy's event records of `ip`: clear without a household, sealed with it, nothing once
   * the household's key is shredded */
  async source(householdId: string | undefined, ip: string): Promise<SourceMetadata> {
    if (householdId === undefined) return { sourceIp: ip }
    const hit = this.fresh(householdId)
    if (hit?.last?.ip === ip) return hit.last.source
    const key = hit?.key ?? (await this.load(householdId))
    if (key === undefined) return {}
    const source: SealedSource = { ...sealSource(key, householdId, ip), sourceIpOwner: `household:${householdId}` }
    const entry = this.keys.get(householdId)
    if (entry?.key === key) entry.last = { ip, source }
    return source
  }

  /** the address a household's toy connected from, or undefined once the household's key is shredded */
  async open(householdId: string, sealed: string): Promise<string | undefined> {
    const key = await this.ring.existingKey(householdId)
    return key === undefined ? undefined : openSourceWith(key, householdId, sealed)
  }

  async shred(householdId: string): Promise<void> {
    this.keys.delete(householdId)
    await this.ring.shred(householdId)
  }

  private fresh(householdId: string) {
    const hit = this.keys.get(householdId)
    return hit !== undefined && this.now() - hit.at < this.cacheMs ? hit : undefined
  }

  private async load(householdId: string): Promise<Buffer | undefined> {
    let key: Buffer
    try {
      key = await this.ring.keyFor(householdId)
    } catch (err) {
      if (err instanceof KennelError && err.code === 'KENNEL_ERR_KEY_SHREDDED') return undefined
      throw err
    }
    this.keys.delete(householdId)
    if (this.keys.size >= this.maxHouseholds) this.keys.delete(this.keys.keys().next().value!)
    this.keys.set(householdId, { key, at: this.now() })
    return key
  }
}
