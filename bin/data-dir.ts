import fs from 'node:fs'
import path from 'node:path'
import type { Config } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'

// `kennel start` writes to its data directory whatever the backends (development CA, keys, the
// embedded stores, the mail outbox): a directory it cannot write is found before anything opens,
// and the message says what to change instead of an EACCES from deep inside a store.

const DATA_DIR = 'KENNEL_DATA_DIR'

function remedy(code: string | undefined, dir: string): string | undefined {
  const elsewhere = `or set ${DATA_DIR} to a directory it can write`
  const user = typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : ''
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `the data directory ${dir} is not writable by the user kennel runs as${user}: give that user write access to it (chown, chmod) ${elsewhere}`
    case 'EROFS':
      return `the data directory ${dir} is on a read-only file system: mount a writable volume there ${elsewhere}`
    case 'ENOTDIR':
    case 'EEXIST':
      return `the data directory ${dir} or one of its parents is a file, not a directory: set ${DATA_DIR} to a directory`
    case 'ENOSPC':
    case 'EDQUOT':
      return `no space left for the data directory ${dir}: free some ${elsewhere}`
    default:
      return undefined
  }
}

/** create the data directory (0700) when missing and prove that files can be created in it */
export function prepareDataDir(config: Pick<Config, 'dataDir'>): void {
  const dir = config.dataDir
  const probe = path.join(dir, `.kennel-write-check-${process.pid}`)
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    fs.writeFileSync(probe, '', { mode: 0o600 })
    fs.rmSync(probe)
  } catch (err) {
    const reason = remedy((err as NodeJS.ErrnoException).code, dir)
    if (reason === undefined) throw err
    throw new KennelError('KENNEL_ERR_DATA_DIR', reason, { dataDir: dir }, { cause: err })
  }
}
