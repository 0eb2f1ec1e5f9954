import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { KennelError } from '../errors.ts'
import type { KeyRingName, KeyStore, StoredKey } from './port.ts'

// Wrapped keys as files, one per owner (mode 0600, directories 0700): `<owner>.key`, and after a
// shred the tombstone `<owner>.shredded`. The tombstone is written before the key is removed and
// is checked on every read, so a key file written by a creator racing a shred reads as shredded
// and is removed. One machine only: another node has another data dir (use PostgreSQL there).

/** an owner is a file name and nothing more: no separators, no dots */
const OWNER = /^[A-Za-z0-9-]{1,100}$/

export class FileKeyStore implements KeyStore {
  readonly kind = 'files' as const
  /** a file read costs little: every use sees a shred made by another process (`kennel account erase`) */
  readonly recheckMs = 0

  /** the directory of each ring it keeps */
  constructor(private readonly dirs: Readonly<Partial<Record<KeyRingName, string>>>) {}

  // synchronous on purpose: a key is read on every authenticated request, and two small local
  // reads cost a few microseconds where the thread pool's round trips cost a few hundred
  async read(ring: KeyRingName, owner: string): Promise<StoredKey | undefined> {
    const { key, tombstone } = this.files(ring, owner)
    if (fs.existsSync(tombstone)) {
      fs.rmSync(key, { force: true })
      return { state: 'shredded' }
    }
    try {
      return { state: 'live', wrapped: fs.readFileSync(key) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  async create(ring: KeyRingName, owner: string, wrapped: Buffer): Promise<StoredKey> {
    const { key } = this.files(ring, owner)
    await fsp.mkdir(path.dirname(key), { recursive: true, mode: 0o700 })
    // written aside, then linked: the key file appears whole, and link() fails when it exists,
    // so of two creators the first one's key is kept and nobody reads a half-written file
    const tmp = `${key}.${randomBytes(8).toString('hex')}.tmp`
    try {
      // on disk before it is linked, and the link on disk before the key is used: a power loss
      // must not leave a person's data sealed with a key that never reached the disk
      const file = await fsp.open(tmp, 'wx', 0o600)
      try {
        await file.writeFile(wrapped)
        await file.sync()
      } finally {
        await file.close()
      }
      await fsp.link(tmp, key).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err
      })
    } finally {
      await fsp.rm(tmp, { force: true })
    }
    await syncDir(path.dirname(key))
    const stored = await this.read(ring, owner)
    if (stored === undefined) return { state: 'shredded' }
    return stored
  }

  async shred(ring: KeyRingName, owner: string): Promise<void> {
    const { key, tombstone } = this.files(ring, owner)
    await fsp.mkdir(path.dirname(key), { recursive: true, mode: 0o700 })
    await fsp.writeFile(tombstone, '', { mode: 0o600 })
    await fsp.rm(key, { force: true })
    // the erasure is reported done only once the key's removal is on disk
    await syncDir(path.dirname(key))
  }

  async close(): Promise<void> {}

  /** the owners of the ring with a key file or a tombstone here (the move to PostgreSQL, open.ts) */
  owners(ring: KeyRingName): string[] {
    const dir = this.dirs[ring]
    if (dir === undefined || !fs.existsSync(dir)) return []
    const names = fs
      .readdirSync(dir)
      .map((f) => /^(.+)\.(key|shredded)$/.exec(f)?.[1])
      .filter((o): o is string => o !== undefined && OWNER.test(o))
    return [...new Set(names)]
  }

  /** remove what is kept here for the owner; `keep` renames the key file to `{owner}.key.{keep}` instead */
  async remove(ring: KeyRingName, owner: string, keep?: string): Promise<void> {
    const { key, tombstone } = this.files(ring, owner)
    if (keep !== undefined) {
      await fsp.rename(key, `${key}.${keep}`).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err
      })
    }
    await fsp.rm(key, { force: true })
    await fsp.rm(tombstone, { force: true })
  }

  private files(ring: KeyRingName, owner: string): { key: string; tombstone: string } {
    const dir = this.dirs[ring]
    if (dir === undefined) throw new KennelError('KENNEL_ERR_INTERNAL', `this key store keeps no ${ring} keys`)
    if (!OWNER.test(owner))
      throw new KennelError('KENNEL_ERR_VALIDATION', `invalid key owner ${JSON.stringify(owner.slice(0, 40))}`)
    return { key: path.join(dir, `${owner}.key`), tombstone: path.join(dir, `${owner}.shredded`) }
  }
}

/** where the embedded deployment has always kept them: person keys in <data dir>/keys/persons,
 * household data keys beside the embedded blob store's objects, in <data dir>/blobs/keys */
export function fileKeyStore(dataDir: string): FileKeyStore {
  return new FileKeyStore({
    person: path.join(dataDir, 'keys', 'persons'),
    'household-data': path.join(dataDir, 'blobs', 'keys'),
  })
}

/** a directory's entries (a new link, a removed file) on disk */
async function syncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
