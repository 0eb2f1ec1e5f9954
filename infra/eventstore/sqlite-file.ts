import fs from 'node:fs'

// Embedded databases are private to their owner (R7), whatever the mode of the directory they are
// in (a data dir the user made with mkdir under umask 022 is 0755). SQLite creates a database
// file 0644 under that umask and creates its -wal and -shm files lazily, each with the mode of
// the database file: changing the database's mode after opening it is too late for them. So
// the file is created 0600 before SQLite opens it, and an existing one (with companions left by
// an earlier kennel) is made 0600 first.

const COMPANIONS = ['', '-wal', '-shm', '-journal']

export function preparePrivateDatabase(file: string): void {
  try {
    fs.closeSync(fs.openSync(file, 'wx', 0o600))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  for (const suffix of COMPANIONS) {
    try {
      fs.chmodSync(`${file}${suffix}`, 0o600)
    } catch {
      // absent, or not ours to chmod (a read-only copy); SQLite reports what keeps it from opening
    }
  }
}
