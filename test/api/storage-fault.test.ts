import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { FileKeyStore } from '../../infra/keystore/files.ts'
import type { KeyRingName, StoredKey } from '../../infra/keystore/port.ts'
import { buildTestApi, STRONG } from './helpers.ts'

// A disk that is full (or read-only) is a fault of the service, like a database outage: with the
// data dir on a full file system, `POST /v1/accounts` answered 500 KENNEL_ERR_INTERNAL "internal
// error" (the person's key could not be written: ENOSPC). It answers 503 KENNEL_ERR_UNAVAILABLE
// with Retry-After, and succeeds once there is room again.

class FullDisk extends FileKeyStore {
  full = true
  override async create(ring: KeyRingName, owner: string, wrapped: Buffer): Promise<StoredKey> {
    if (this.full)
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
        code: 'ENOSPC',
        errno: -28,
        syscall: 'write',
      })
    return super.create(ring, owner, wrapped)
  }
}

t.test(
  'a full disk answers 503 with Retry-After, not 500, and the same request succeeds once there is room',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-full-disk-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const keys = new FullDisk({ person: path.join(dir, 'persons'), 'household-data': path.join(dir, 'households') })
    const api = await buildTestApi(t, { deps: { keys } })
    const signUp = () =>
      api.app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'full@example.org', password: STRONG } })
    const refused = await signUp()
    t.equal(refused.statusCode, 503)
    t.match(refused.json(), { error: { code: 'KENNEL_ERR_UNAVAILABLE', message: /ENOSPC/ } })
    t.ok(refused.headers['retry-after'], 'Retry-After')
    keys.full = false
    t.equal((await signUp()).statusCode, 202, 'accepted once there is room')
  },
)
