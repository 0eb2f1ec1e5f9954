import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { grantRole } from '../../bin/commands/account.ts'
import { createAuditProjection } from '../../projections/audit/projection.ts'
import { createAuditPort } from '../../projections/catalogue.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import { testKeys } from '../projections/helpers.ts'
import { bearer, buildTestApi, STRONG } from './helpers.ts'

// Breach reports through the API (R16): the download URLs a credential obtained and only their
// own use, and refusals that write no report.

async function world(t: Test) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-breach-'))
  const readModels = openSqliteReadModels(path.join(dir, 'readmodels.sqlite'))
  t.teardown(async () => (await readModels.close(), fs.rmSync(dir, { recursive: true, force: true })))
  const start = Date.now()
  let now = new Date(start)
  const deps = { store: undefined as never, readModels, verifiers: [] }
  const api = await buildTestApi(t, { deps: { now: () => now, audit: { verify: async () => ({}), breachReport: (r) => createAuditPort({ ...deps, store: api.pki.store }).breachReport(r) } } })
  const alice = await api.parent('alice@example.org')
  await api.pairedToy(alice.token, alice.householdId, 'toy-alice')
  const upload = (await api.app.inject({ method: 'POST', url: `/v1/households/${alice.householdId}/recordings`, headers: bearer(alice.token), payload: { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: 5 } })).json()
  const u = new URL(upload.url)
  await api.app.inject({ method: 'PUT', url: u.pathname + u.search, headers: upload.headers, payload: Buffer.from('hello') })
  await api.app.inject({ method: 'POST', url: `/v1/recordings/${upload.recordingId}/complete`, headers: bearer(alice.token) })
  await api.signUp('audit@example.org')
  await grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'audit@example.org', 'auditor')
  const auditor = (await api.app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'audit@example.org', password: STRONG } })).json().token as string
  const caughtUp = async () => {
    const runner = await startProjectionRunner({ store: api.pki.store, readModels, projections: [createAuditProjection({ signer: testKeys().signer, headEveryEvents: 1000, headEverySeconds: 86400 })] })
    await runner.caughtUp
    await runner.stop()
  }
  const report = (body: Record<string, unknown>) => api.app.inject({ method: 'POST', url: '/v1/audit/breach-reports', headers: bearer(auditor), payload: body })
  return { api, alice, upload, caughtUp, report, advance: (seconds: number) => (now = new Date(start + seconds * 1000)) }
}

t.test('two sessions download the same recording with their own URLs: each report lists only its own download', async (t) => {
  const { api, alice, upload, caughtUp, report, advance } = await world(t)
  // the stolen session: a second login of the same account
  const thief = (await api.app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'alice@example.org', password: STRONG } })).json().token as string
  const own = (await api.app.inject({ method: 'GET', url: `/v1/recordings/${upload.recordingId}/download-url`, headers: bearer(alice.token) })).json()
  advance(2)
  const stolen = (await api.app.inject({ method: 'GET', url: `/v1/recordings/${upload.recordingId}/download-url`, headers: bearer(thief) })).json()
  for (const url of [stolen.url, own.url]) {
    const got = await api.app.inject({ method: 'GET', url: new URL(url).pathname + new URL(url).search })
    t.equal(got.statusCode, 200)
  }
  const events = await api.pki.store.readStream(`recording-${upload.recordingId}`)
  const issued = events.filter((e) => e.type === 'DownloadUrlIssued')
  const used = events.filter((e) => e.type === 'RecordingDownloaded')
  const ids = issued.map((e) => (e.data as { urlId: string }).urlId)
  t.equal(new Set(ids).size, 2, 'each URL has its own id')
  t.same(used.map((e) => (e.data as { urlId: string }).urlId), [ids[1], ids[0]], 'each download names the URL used')
  for (const e of [...issued, ...used]) t.notOk(JSON.stringify(e).includes(new URL(own.url).searchParams.get('sig')!) || JSON.stringify(e).includes(new URL(stolen.url).searchParams.get('sig')!), 'no signature in events')
  await caughtUp()

  const res = await report({ credential: issued[1]!.metadata.credential, from: new Date(Date.now() - 3600_000).toISOString(), to: new Date(Date.now() + 3600_000).toISOString() })
  t.equal(res.statusCode, 201, res.body)
  t.same(res.json().urls.map((u: { urlId: string; used: Array<{ id: string; match: string }> }) => [u.urlId, u.used.map((x) => [x.id, x.match])]), [[ids[1], [[used[0]!.id, 'url-id']]]], 'the thief\'s URL and only its download')
})

t.test('an unknown credential answers 404 and an impossible date 400, and neither writes a report', async (t) => {
  const { api, caughtUp, report } = await world(t)
  await caughtUp()
  const window = { from: '2000-01-01T00:00:00Z', to: '2100-01-01T00:00:00Z' }
  for (const credential of ['device:nosuchdevice', 'account:00000000-0000-0000-0000-000000000000', 'token:nosuchtoken', 'cert:ffff']) {
    const res = await report({ credential, ...window })
    t.equal(res.statusCode, 404, credential)
    t.equal(res.json().error.code, 'KENNEL_ERR_NOT_FOUND', credential)
  }
  for (const from of ['2026-02-30T00:00:00Z', '2026-12-03T00:00:00']) {
    const res = await report({ credential: 'device:toy-alice', from, to: window.to })
    t.equal(res.statusCode, 400, from)
    t.equal(res.json().error.code, 'KENNEL_ERR_VALIDATION', from)
    t.match(res.body, from, 'the message names the value')
  }
  t.same(await api.pki.store.readStream('audit-reports'), [], 'no report written')
  t.equal((await report({ credential: 'device:toy-alice', ...window })).statusCode, 201, 'a known device still gets its report')
})
