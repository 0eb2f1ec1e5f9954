import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { accountContacts } from '../../bin/breach-contacts.ts'
import { grantRole } from '../../bin/commands/account.ts'
import { revokeDevice } from '../../devices/revoke.ts'
import { KeyRing, loadMasterKey } from '../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../infra/keystore/files.ts'
import { createAuditProjection } from '../../projections/audit/projection.ts'
import { createAuditPort } from '../../projections/catalogue.ts'
import { openSqliteReadModels } from '../../projections/readmodels/sqlite.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import { testKeys } from '../projections/helpers.ts'
import { bearer, buildTestApi, listenTestApi, request, STRONG } from './helpers.ts'

// Breach reports through the API (R16): the download URLs a credential obtained, only their own
// use, the attempts the embedded store refused once the credential was revoked, and refusals that
// write no report.

async function world(t: Test) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-breach-'))
  const readModels = openSqliteReadModels(path.join(dir, 'readmodels.sqlite'))
  t.teardown(async () => (await readModels.close(), fs.rmSync(dir, { recursive: true, force: true })))
  const start = Date.now()
  let now = new Date(start)
  const deps = { store: undefined as never, readModels, verifiers: [] }
  const api = await buildTestApi(t, {
    deps: {
      now: () => now,
      audit: {
        verify: async () => ({}),
        latestHead: async () => null,
        breachReport: (r) =>
          createAuditPort({
            ...deps,
            store: api.pki.store,
            contacts: accountContacts({ config: api.pki.config, store: api.pki.store }),
          }).breachReport(r),
      },
    },
  })
  const alice = await api.parent('alice@example.org')
  const toy = await api.pairedToy(alice.token, alice.householdId, 'toy-alice')
  const upload = (
    await api.app.inject({
      method: 'POST',
      url: `/v1/households/${alice.householdId}/recordings`,
      headers: bearer(alice.token),
      payload: { deviceId: 'toy-alice', contentType: 'audio/ogg', bytes: 5 },
    })
  ).json()
  const u = new URL(upload.url)
  await api.app.inject({
    method: 'PUT',
    url: u.pathname + u.search,
    headers: upload.headers,
    payload: Buffer.from('hello'),
  })
  await api.app.inject({
    method: 'POST',
    url: `/v1/recordings/${upload.recordingId}/complete`,
    headers: bearer(alice.token),
  })
  await api.signUp('audit@example.org')
  await grantRole({ config: api.pki.config, store: api.pki.store, actor: 'cli:test' }, 'audit@example.org', 'auditor')
  const auditor = (
    await api.app.inject({
      method: 'POST',
      url: '/v1/sessions',
      payload: { email: 'audit@example.org', password: STRONG },
    })
  ).json().token as string
  const caughtUp = async () => {
    const runner = await startProjectionRunner({
      store: api.pki.store,
      readModels,
      projections: [
        createAuditProjection({ signer: testKeys().signer, headEveryEvents: 1000, headEverySeconds: 86400 }),
      ],
    })
    await runner.caughtUp
    await runner.stop()
  }
  const report = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    api.app.inject({
      method: 'POST',
      url: '/v1/audit/breach-reports',
      headers: { ...bearer(auditor), ...headers },
      payload: body,
    })
  return {
    dir,
    api,
    alice,
    toy,
    upload,
    caughtUp,
    report,
    advance: (seconds: number) => (now = new Date(start + seconds * 1000)),
  }
}

t.test(
  'two sessions download the same recording with their own URLs: each report lists only its own download',
  async (t) => {
    const { api, alice, upload, caughtUp, report, advance } = await world(t)
    // the stolen session: a second login of the same account
    const thief = (
      await api.app.inject({
        method: 'POST',
        url: '/v1/sessions',
        payload: { email: 'alice@example.org', password: STRONG },
      })
    ).json().token as string
    const own = (
      await api.app.inject({
        method: 'GET',
        url: `/v1/recordings/${upload.recordingId}/download-url`,
        headers: bearer(alice.token),
      })
    ).json()
    advance(2)
    const stolen = (
      await api.app.inject({
        method: 'GET',
        url: `/v1/recordings/${upload.recordingId}/download-url`,
        headers: bearer(thief),
      })
    ).json()
    for (const url of [stolen.url, own.url]) {
      const got = await api.app.inject({ method: 'GET', url: new URL(url).pathname + new URL(url).search })
      t.equal(got.statusCode, 200)
    }
    const events = await api.pki.store.readStream(`recording-${upload.recordingId}`)
    const issued = events.filter((e) => e.type === 'DownloadUrlIssued')
    const used = events.filter((e) => e.type === 'RecordingDownloaded')
    const ids = issued.map((e) => (e.data as { urlId: string }).urlId)
    t.equal(new Set(ids).size, 2, 'each URL has its own id')
    t.same(
      used.map((e) => (e.data as { urlId: string }).urlId),
      [ids[1], ids[0]],
      'each download names the URL used',
    )
    for (const e of [...issued, ...used])
      t.notOk(
        JSON.stringify(e).includes(new URL(own.url).searchParams.get('sig')!) ||
          JSON.stringify(e).includes(new URL(stolen.url).searchParams.get('sig')!),
        'no signature in events',
      )
    await caughtUp()

    const res = await report({
      credential: issued[1]!.metadata.credential,
      since: new Date(Date.now() - 3600_000).toISOString(),
      until: new Date(Date.now() + 3600_000).toISOString(),
    })
    t.equal(res.statusCode, 201, res.body)
    t.same(
      res
        .json()
        .urls.map((u: { urlId: string; used: Array<{ id: string; match: string }> }) => [
          u.urlId,
          u.used.map((x) => [x.id, x.match]),
        ]),
      [[ids[1], [[used[0]!.id, 'url-id']]]],
      "the thief's URL and only its download",
    )
  },
)

t.test('an unknown credential answers 404 and an impossible date 400, and neither writes a report', async (t) => {
  const { api, caughtUp, report } = await world(t)
  await caughtUp()
  const window = { since: '2000-01-01T00:00:00Z', until: '2100-01-01T00:00:00Z' }
  for (const credential of [
    'device:nosuchdevice',
    'account:00000000-0000-0000-0000-000000000000',
    'token:nosuchtoken',
    'cert:ffff',
  ]) {
    const res = await report({ credential, ...window })
    t.equal(res.statusCode, 404, credential)
    t.equal(res.json().error.code, 'KENNEL_ERR_NOT_FOUND', credential)
  }
  for (const since of ['2026-02-30T00:00:00Z', '2026-12-03T00:00:00']) {
    const res = await report({ credential: 'device:toy-alice', since, until: window.until })
    t.equal(res.statusCode, 400, since)
    t.equal(res.json().error.code, 'KENNEL_ERR_VALIDATION', since)
    t.match(res.json().error.message, `since ${JSON.stringify(since)}`, 'the message names the field and the value')
  }
  const old = await report({ credential: 'device:toy-alice', from: window.since, to: window.until })
  t.equal(old.statusCode, 400, 'the window is since/until, as on the CLI')
  t.match(old.json().error, { code: 'KENNEL_ERR_VALIDATION', message: /since/ })
  t.same(await api.pki.store.readStream('audit-reports'), [], 'no report written')
  t.equal(
    (await report({ credential: 'device:toy-alice', ...window })).statusCode,
    201,
    'a known device still gets its report',
  )
})

t.test(
  'a stolen toy: its kept URL is refused after the revocation; the report names the parent by the address used at sign-up, lists and flags the refused attempt, and is a CSV for the mailing',
  async (t) => {
    const { api, alice, toy, upload, caughtUp, report, advance } = await world(t)
    const server = await listenTestApi(t, api)
    const asToy = (p: string) =>
      request(server.port, { method: 'GET', path: p, ca: server.caPem, key: toy.keyPem, cert: toy.certPem })
    const fetchUrl = (url: string) =>
      request(server.port, { method: 'GET', path: new URL(url).pathname + new URL(url).search, ca: server.caPem })
    // the thief holds the toy's key: two download URLs, one used at once, one kept for later
    const first = await asToy(`/v1/device/recordings/${upload.recordingId}/download-url`)
    t.equal(first.status, 200, first.body)
    t.equal((await fetchUrl(first.json().url)).status, 200)
    advance(2)
    const kept = await asToy(`/v1/device/recordings/${upload.recordingId}/download-url`)
    t.equal(kept.status, 200, kept.body)
    await revokeDevice(api.pki.deps(), 'toy-alice', 'stolen from the car')
    await api.app.readModels.waitFor(await api.pki.store.headPosition())
    t.equal(
      (await asToy(`/v1/device/recordings/${upload.recordingId}/download-url`)).status,
      403,
      'the revoked toy gets no new URL',
    )
    // the thief tries the URL it kept: the embedded store asks whether its credential still holds
    const attempt = await fetchUrl(kept.json().url)
    t.equal(attempt.status, 403, 'the URL it obtained before is refused with the credential')
    t.equal(attempt.json().error.code, 'KENNEL_ERR_URL_REVOKED')
    t.notOk(attempt.body.includes('hello'), 'no bytes of the recording')
    const stream = await api.pki.store.readStream(`recording-${upload.recordingId}`)
    t.equal(
      stream.filter((e) => e.type === 'RecordingDownloaded').length,
      1,
      'only the download before the revocation was served',
    )
    await caughtUp()

    const window = {
      credential: 'device:toy-alice',
      since: new Date(Date.now() - 3600_000).toISOString(),
      until: new Date(Date.now() + 3600_000).toISOString(),
    }
    const res = await report(window)
    t.equal(res.statusCode, 201, res.body)
    const json = res.json()
    t.same(
      json.notifications.map((n: { accountId: string; contact: string }) => [n.accountId, n.contact]),
      [[alice.accountId, 'alice@example.org']],
      'the parent, by the address she signed up with; not the auditor',
    )
    t.match(json.revocation, { type: 'DeviceRevoked' })
    t.same(
      json.households.map((h: { householdId: string; recordingIds: string[]; flags: string[] }) => [
        h.householdId,
        h.recordingIds,
        h.flags,
      ]),
      [[alice.householdId, [upload.recordingId], ['url-refused-after-revocation']]],
      'flagged as refused, not as used: nothing was served',
    )
    const refusedEvent = stream.find((e) => e.type === 'RecordingUrlRefused')!
    t.same(
      json.households[0].urls.map(
        (u: { used: Array<{ afterRevocation: boolean; match: string }>; refused: unknown[] }) => [
          u.used.map((x) => [x.match, x.afterRevocation]),
          u.refused.length,
        ],
      ),
      [
        [[['url-id', false]], 0],
        [[], 1],
      ],
      'the URL used before the revocation; the kept one never used, tried once',
    )
    t.match(
      json.households[0].urls[1].refused,
      [
        {
          position: refusedEvent.position,
          time: refusedEvent.time,
          type: 'RecordingUrlRefused',
          match: 'url-id',
          reason: 'device-revoked',
          code: 'KENNEL_ERR_URL_REVOKED',
          attempts: 1,
          sourceIp: /127\.0\.0\.1/,
          afterRevocation: true,
        },
      ],
      'the refused attempt: when, why, how often and from where',
    )

    const csv = await report(window, { accept: 'text/csv' })
    t.equal(csv.statusCode, 201, csv.body)
    t.match(csv.headers['content-type'], /^text\/csv; charset=utf-8/)
    t.match(csv.headers['content-disposition'], /^attachment; filename="breach-report-[0-9a-f-]{36}\.csv"$/)
    const rows = csv.body
      .split('\r\n')
      .slice(0, -1)
      .map((line) => line.split(','))
    t.equal(rows.length, 2, 'the header and one row: one holder of one household')
    const row = Object.fromEntries(rows[0]!.map((name, i) => [name, rows[1]![i]]))
    t.match(row, {
      account_id: alice.accountId,
      contact: 'alice@example.org',
      household_id: alice.householdId,
      role: 'owner',
      devices: 'toy-alice',
      recordings: upload.recordingId,
      urls_issued: '2',
      urls_used: '1',
      urls_used_after_revocation: '0',
      urls_refused_after_revocation: '1',
      flags: 'url-refused-after-revocation',
    })
    t.equal(
      (await report(window, { accept: 'application/json, text/csv;q=0.5' })).headers['content-type'],
      'application/json; charset=utf-8',
      'JSON unless CSV is preferred',
    )

    const events = JSON.stringify(await api.pki.store.readAll())
    t.notOk(events.includes('alice@example.org'), 'no event holds the address in clear')
    // outbox/ is the development stand-in for the mail server (the sign-up mail went to her): not kennel's storage
    const outbox = path.join(api.pki.dir, 'outbox')
    const files = fs
      .readdirSync(api.pki.dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile() && !e.parentPath.startsWith(outbox))
    t.notOk(
      files.some((e) => fs.readFileSync(path.join(e.parentPath, e.name)).includes('alice@example.org')),
      'nor any file in the data dir but the mail outbox',
    )
    const reports = await api.pki.store.readStream('audit-reports')
    t.same(
      reports
        .filter((e) => e.type === 'AccountHolderNotificationRequired')
        .map((e) => (e.data as { contact: string }).contact),
      ['resolved', 'resolved', 'resolved'],
    )
    t.match(
      reports.find((e) => e.type === 'BreachReportGenerated')!.data,
      {
        urlsUsed: 1,
        urlsUsedAfterRevocation: 0,
        urlsRefusedAfterRevocation: 1,
        refusedAttemptsAfterRevocation: 1,
        households: [
          {
            urls: [
              { refusedAt: [] },
              { usedAt: [], refusedAt: [refusedEvent.position], refusedAfterRevocation: [refusedEvent.position] },
            ],
            flags: ['url-refused-after-revocation'],
          },
        ],
      },
      'the report event counts the refused attempt',
    )

    // erasure: the person key is shredded, and the address with it
    await new KeyRing(fileKeyStore(api.pki.config.dataDir), loadMasterKey(api.pki.config), 'person').shred(
      alice.accountId,
    )
    const erased = await report(window, { accept: 'text/csv' })
    t.match(erased.body.split('\r\n')[1], `,${alice.accountId},[erased],${alice.householdId},owner,`)
    t.same(
      (await report(window)).json().notifications.map((n: { contact: string }) => n.contact),
      ['[erased]'],
    )
  },
)
