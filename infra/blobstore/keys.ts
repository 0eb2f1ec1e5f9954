import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { Config } from '../config.ts'
import type { KeyRingName, KeyStore, StoredKey } from '../keystore/port.ts'
import { KennelError } from '../errors.ts'

// Envelope encryption (R12). One master key (KENNEL_MASTER_KEY, or a development key generated
// in the data dir) wraps per-household data keys and per-person keys; purpose-specific keys
// (URL signing, e-mail lookup) are derived from it with HKDF. Deleting a wrapped key from a
// KeyRing is crypto-shredding: what it encrypted is unreadable from then on. The wrapped keys are
// kept in a KeyStore (infra/keystore); the master key and unwrapped keys never leave the process.

const DEV_KEY_FILE = 'master.key'

export function loadMasterKey(config: Pick<Config, 'masterKey' | 'dataDir' | 'env'>): Buffer {
  if (config.masterKey !== undefined) return Buffer.from(config.masterKey, 'base64')
  if (config.env === 'production')
    throw new KennelError('KENNEL_ERR_CONFIG', 'KENNEL_MASTER_KEY is required in production (R12)')
  const file = path.join(config.dataDir, DEV_KEY_FILE)
  fs.mkdirSync(config.dataDir, { recursive: true })
  try {
    fs.writeFileSync(file, randomBytes(32).toString('base64'), { flag: 'wx', mode: 0o600 })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const mode = fs.statSync(file).mode & 0o777
  if ((mode & 0o077) !== 0)
    throw new KennelError(
      'KENNEL_ERR_INSECURE_KEY_FILE',
      `${file} must not be readable by group or others (mode ${mode.toString(8)}; chmod 600 it)`,
    )
  const key = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64')
  if (key.length !== 32) throw new KennelError('KENNEL_ERR_CONFIG', `${file} does not hold a base64 32-byte key`)
  return key
}

export function deriveKey(master: Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `kennel/${purpose}`, 32))
}

/** AES-256-GCM: iv(12) ‖ tag(16) ‖ ciphertext; `aad` binds the ciphertext to its owner. */
export function seal(key: Buffer, plaintext: Buffer, aad: string): Buffer {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(aad))
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return Buffer.concat([iv, cipher.getAuthTag(), body])
}

export function open(key: Buffer, sealed: Buffer, aad: string): Buffer {
  if (sealed.length < 28) throw new KennelError('KENNEL_ERR_INTERNAL', 'sealed data is truncated')
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12))
  decipher.setAAD(Buffer.from(aad))
  decipher.setAuthTag(sealed.subarray(12, 28))
  return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()])
}

/** Data keys of one ring (per person, per household), wrapped by the master key and kept in a
 * KeyStore (infra/keystore: files, or PostgreSQL for a cluster). Keys read are kept in memory for
 * the store's `recheckMs` at most, so a shred made by another process or node takes effect here
 * within that bound; one made here, at once. A shredded owner is never given a new key: keyFor
 * fails with KENNEL_ERR_KEY_SHREDDED. */
export class KeyRing {
  private readonly wrapping: Buffer
  private readonly cache = new Map<string, { key: Buffer; wrapped: Buffer; readAt: number }>()
  private readonly now: () => number

  constructor(
    private readonly store: KeyStore,
    master: Buffer,
    private readonly purpose: KeyRingName,
    options: { now?: () => Date } = {},
  ) {
    this.wrapping = deriveKey(master, `keyring/${purpose}`)
    const now = options.now
    this.now = now ? () => now().getTime() : Date.now
  }

  /** the owner's key, created on first use; KENNEL_ERR_KEY_SHREDDED once shredded */
  async keyFor(owner: string): Promise<Buffer> {
    const cached = this.cached(owner)
    if (cached) return cached
    const stored =
      (await this.store.read(this.purpose, owner)) ??
      (await this.store.create(this.purpose, owner, seal(this.wrapping, randomBytes(32), this.aad(owner))))
    const key = this.unwrap(owner, stored)
    if (!key)
      throw new KennelError(
        'KENNEL_ERR_KEY_SHREDDED',
        `the ${this.purpose} key of ${owner} was erased; no new one is made`,
      )
    return key
  }

  /** the owner's key, or undefined when there is none or it was shredded (never creates one) */
  async existingKey(owner: string): Promise<Buffer | undefined> {
    const cached = this.cached(owner)
    if (cached) return cached
    const stored = await this.store.read(this.purpose, owner)
    return stored === undefined ? undefined : this.unwrap(owner, stored)
  }

  /** crypto-shredding (R12): what the key sealed is unreadable from now on, on every node sharing the store */
  async shred(owner: string): Promise<void> {
    assertOwner(owner)
    this.cache.delete(owner)
    await this.store.shred(this.purpose, owner)
  }

  private cached(owner: string): Buffer | undefined {
    assertOwner(owner)
    const hit = this.cache.get(owner)
    return hit && this.now() - hit.readAt < this.store.recheckMs ? hit.key : undefined
  }

  /** the key of what was read; unwrapped again only when it is not the one held */
  private unwrap(owner: string, stored: StoredKey): Buffer | undefined {
    if (stored.state === 'shredded') {
      this.cache.delete(owner)
      return undefined
    }
    const hit = this.cache.get(owner)
    const key = hit?.wrapped.equals(stored.wrapped) ? hit.key : open(this.wrapping, stored.wrapped, this.aad(owner))
    this.cache.set(owner, { key, wrapped: stored.wrapped, readAt: this.now() })
    return key
  }

  private aad(owner: string): string {
    return `${this.purpose}:${owner}`
  }
}

function assertOwner(owner: string): void {
  if (!/^[A-Za-z0-9-]{1,100}$/.test(owner))
    throw new KennelError('KENNEL_ERR_VALIDATION', `invalid key owner ${JSON.stringify(owner.slice(0, 40))}`)
}
