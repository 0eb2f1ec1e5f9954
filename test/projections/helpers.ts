import { generateKeyPairSync } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { openEventStore } from '../../infra/eventstore/open.ts'
import type { EventStore, NewEvent } from '../../infra/eventstore/port.ts'
import { signerFromPem, verifierFromPem, type AuditSigner, type AuditVerifier } from '../../projections/audit/keys.ts'
import type { Projection } from '../../projections/projection.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import type { EntryLookups, ReadModelStore } from '../../projections/readmodels/port.ts'

export interface Sandbox {
  dir: string
  url: string
  store: EventStore
  readModels: ReadModelStore & EntryLookups
  readModelFile: string
}

/** an embedded event store and read-model file in a fresh temporary directory */
export async function sandbox(t: Test, name = 'events'): Promise<Sandbox> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-proj-'))
  const url = `sqlite:${path.join(dir, `${name}.sqlite`)}`
  const store = await openEventStore(url, { environment: 'test' })
  const readModelFile = path.join(dir, `${name}.readmodels.sqlite`)
  const readModels = openSqliteReadModels(readModelFile)
  t.teardown(async () => {
    await store.close()
    await readModels.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  return { dir, url, store, readModels, readModelFile }
}

export function testKeys(): {
  signer: AuditSigner
  verifier: AuditVerifier
  publicKeyPem: string
  privateKeyPem: string
} {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
  return { signer: signerFromPem(privateKeyPem), verifier: verifierFromPem(publicKeyPem), publicKeyPem, privateKeyPem }
}

/** a small projection for runner tests: events per device and the last event time */
export const deviceActivity: Projection = {
  name: 'device-activity',
  version: 1,
  eventTypes: ['DeviceConnected', 'PublishAccepted'],
  apply(tx, e) {
    const { deviceId } = e.data as { deviceId: string }
    const doc = tx.get<{ count: number; last: number }>('activity', deviceId) ?? { count: 0, last: 0 }
    tx.put('activity', deviceId, { count: doc.count + 1, last: e.position })
  },
}

/** deterministic pseudo-random scenario traffic */
export function traffic(n: number, seed = 1): Array<{ stream: string; event: NewEvent }> {
  let x = seed
  const rnd = (k: number): number => {
    x = (x * 1103515245 + 12345) % 2147483648
    return x % k
  }
  return Array.from({ length: n }, (_, i) => {
    const deviceId = `toy-${rnd(20)}`
    const type = rnd(5) === 0 ? 'DeviceConnected' : 'PublishAccepted'
    return {
      stream: `mqtt-${deviceId}`,
      event: {
        type,
        data: { deviceId, i, size: rnd(1000) },
        metadata: { actor: `device:${deviceId}`, credential: `cert:${deviceId.replace('toy-', 'aa')}` },
      },
    }
  })
}

export async function appendAll(store: EventStore, items: Array<{ stream: string; event: NewEvent }>): Promise<void> {
  for (let i = 0; i < items.length; i += 200)
    await Promise.all(items.slice(i, i + 200).map((x) => store.append(x.stream, [x.event])))
}

/** the documents, entries and checkpoints of a read-model file, for comparing two of them */
export async function dumpReadModels(
  readModels: ReadModelStore & EntryLookups,
  names: readonly string[],
): Promise<unknown> {
  const out: Record<string, unknown> = {}
  for (const name of names) {
    const stored = await readModels.load(name)
    const entries = await readModels.entries(name, 0, 1e9)
    out[name] = {
      position: stored?.position,
      docs: (stored?.docs ?? [])
        .filter(([c]) => c !== '$outbox')
        .map(([c, id, doc]) => `${c}/${id}=${JSON.stringify(doc)}`)
        .sort(),
      entries: entries.map((e) => `${e.ordinal}@${e.position}:${e.digest.toString('hex')}`),
    }
  }
  return out
}
