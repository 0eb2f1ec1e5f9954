import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { Config } from '../config.ts'
import { KennelError } from '../errors.ts'

// Envelope encryption (R12). One master key (KENNEL_MASTER_KEY, or a development key generated
// in the data dir) wraps per-household data keys and per-person keys; purpose-specific keys
// (URL signing, e-mail lookup) are derived from it with HKDF. Deleting a wrapped key from a
// KeyRing is crypto-shredding: what it encrypted is unreadable from then on.

const DEV_KEY_FILE = 'master.key'

export function loadMasterKey(config: Pick<Config, 'masterKey' | 'dataDir' | 'env'>): Buffer {
  if (config.masterKey !== undefined) return Buffer.from(config.masterKey, 'base64')
  if (config.env === 'production') throw new KennelError('KENNEL_ERR_CONFIG', 'KENNEL_MASTER_KEY is required in production (R12)')
  const file = path.join(config.dataDir, DEV_KEY_FILE)
  fs.mkdirSync(config.dataDir, { recursive: true })
  try {
    fs.writeFileSync(file, randomBytes(32).toString('base64'), { flag: 'wx', mode: 0o600 })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const mode = fs.statSync(file).mode & 0o777
  if ((mode & 0o077) !== 0) throw new KennelError('KENNEL_ERR_INSECURE_KEY_FILE', `${file} must not be readable by group or others (mode ${mode.toString(8)}; chmod 600 it)`)
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

/** Data keys wrapped by the master key, one file per owner (mode 0600); `shred` deletes one. */
export class KeyRing {
  private readonly wrapping: Buffer
  private readonly cache = new Map<string, Buffer>()

  constructor(
    private readonly dir: string,
    master: Buffer,
    private readonly purpose: string,
  ) {
    this.wrapping = deriveKey(master, `keyring/${purpose}`)
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  }

  /** the owner's key, created on first use */
  keyFor(owner: string): Buffer {
    const cached = this.cache.get(owner)
    if (cached) return cached
    const file = this.file(owner)
    const aad = `${this.purpose}:${owner}`
    try {
      fs.writeFileSync(file, seal(this.wrapping, randomBytes(32), aad), { flag: 'wx', mode: 0o600 })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const key = open(this.wrapping, fs.readFileSync(file), aad)
    this.cache.set(owner, key)
    return key
  }

  /** the owner's key, or undefined once shredded (never creates one). The file is looked for on
   * every call: another process (`kennel account erase`) may have shredded it since it was cached. */
  existingKey(owner: string): Buffer | undefined {
    if (fs.existsSync(this.file(owner))) return this.keyFor(owner)
    this.cache.delete(owner)
    return undefined
  }

  shred(owner: string): void {
    this.cache.delete(owner)
    fs.rmSync(this.file(owner), { force: true })
  }

  private file(owner: string): string {
    if (!/^[A-Za-z0-9-]{1,100}$/.test(owner)) throw new KennelError('KENNEL_ERR_VALIDATION', `invalid key owner ${JSON.stringify(owner.slice(0, 40))}`)
    return path.join(this.dir, `${owner}.key`)
  }
}
