import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { EmailProtector } from '../../../api/accounts/personal-data.ts'
import { KeyRing, loadMasterKey } from '../../../infra/blobstore/keys.ts'
import { fileKeyStore } from '../../../infra/keystore/files.ts'
import { loadConfig } from '../../../infra/config.ts'
import { openEventStore } from '../../../infra/eventstore/open.ts'
import { later, put, stolenToy } from './stolen-toy.ts'

// `kennel audit report` in its own process, on a data dir where the holders signed up with
// sealed addresses (R16): the notification list as CSV for a mailing, JSON and text.

const run = promisify(execFile)
const bin = path.resolve('bin/kennel.js')

t.test(
  "kennel audit report --format csv --out writes the notification list with the holders' addresses; erased people read [erased]",
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-report-cli-'))
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-report-out-'))
    t.teardown(
      () => (fs.rmSync(dir, { recursive: true, force: true }), fs.rmSync(out, { recursive: true, force: true })),
    )
    const env = { ...process.env, KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir, KENNEL_LOG_LEVEL: 'silent' }
    const kennel = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      run(process.execPath, [bin, ...args], { env }).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      )
    const config = loadConfig({ KENNEL_ENV: 'test', KENNEL_DATA_DIR: dir })
    const masterKey = loadMasterKey(config)
    const personKeys = () => new KeyRing(fileKeyStore(dir), masterKey, 'person')
    const storeUrl = `sqlite:${path.join(dir, 'events.sqlite')}`
    const store = await openEventStore(storeUrl, { environment: 'test' })
    await stolenToy(store, new EmailProtector(masterKey, personKeys()))
    // after the revocation the thief tries r1's URL again, three times in a minute: refused
    await put(
      store,
      'recording-r1',
      'RecordingUrlRefused',
      {
        recordingId: 'r1',
        householdId: 'h1',
        deviceId: 'd1',
        method: 'GET',
        urlId: 'u1',
        until: later,
        code: 'KENNEL_ERR_URL_REVOKED',
        reason: 'device-revoked',
        attempts: 3,
      },
      { actor: 'anonymous', sourceIp: '203.0.113.9' },
    )
    await store.close()
    t.equal((await kennel('projections', 'rebuild')).code, 0, 'rebuilt, with a development signing key')
    const window = ['--credential', 'device:d1', '--since', '2000-01-01T00:00:00Z', '--until', '2100-01-01T00:00:00Z']

    const file = path.join(out, 'notify.csv')
    t.match(await kennel('audit', 'report', ...window, '--format', 'csv', '--out', file), { code: 0, stdout: '' })
    t.equal(fs.statSync(file).mode & 0o777, 0o600, 'the list of addresses is readable by its owner only')
    const rows = fs.readFileSync(file, 'utf8').split('\r\n')
    t.equal(rows.length, 4, 'the header, alice and bob, and the final CRLF')
    t.match(rows[0], /^report_id,credential,since,until,account_id,contact,household_id,role,/)
    t.match(
      rows[1],
      /^[0-9a-f-]{36},device:d1,2000-01-01T00:00:00\.000Z,2100-01-01T00:00:00\.000Z,alice,alice\.parent@example\.org,h1,owner,d1,"publish toys\/d1\/status \(2\); publish toys\/d2\/x,""y"" \(1, denied\); subscribe toys\/d1\/inbox\/# \(1\)",r1; r2,2,2,1,1,url-used-after-revocation; url-refused-after-revocation,/,
    )
    t.match(rows[2], /,bob,'\+bob@example\.org,h1,member,/, 'an address that starts like a formula is neutralised')

    const json = JSON.parse((await kennel('audit', 'report', ...window, '--json')).stdout)
    t.same(
      json.notifications.map((n: { contact: string }) => n.contact),
      ['alice.parent@example.org', '+bob@example.org'],
    )
    const text = (await kennel('audit', 'report', ...window)).stdout
    t.match(text, /household h1 \[url-used-after-revocation, url-refused-after-revocation\]:/)
    t.match(
      text,
      /URL download r1 .* used \S+; refused \S+ \(device-revoked, 3 attempts from 203\.0\.113\.9\) AFTER REVOCATION\n/,
    )
    t.match(text, /URL download r2 .* used \S+ AFTER REVOCATION/)
    t.match(text, /alice\.parent@example\.org {2}account alice: owner of household h1/)

    const bad = await kennel('audit', 'report', ...window, '--format', 'xlsx')
    t.match(bad, {
      code: 64,
      stdout: '',
      stderr: /--format must be text, json, csv \(got "xlsx"\) \(KENNEL_ERR_VALIDATION\)/,
    })

    await personKeys().shred('alice')
    t.equal((await kennel('audit', 'report', ...window, '--format', 'csv', '--out', file)).code, 0)
    t.match(
      fs.readFileSync(file, 'utf8').split('\r\n')[1],
      /,alice,\[erased\],h1,owner,/,
      'after erasure the address is gone from the report',
    )

    const reopened = await openEventStore(storeUrl, { environment: 'test' })
    const reports = await reopened.readStream('audit-reports')
    const everything = JSON.stringify(await reopened.readAll())
    await reopened.close()
    t.same(
      reports.filter((e) => e.type === 'BreachReportGenerated').length,
      4,
      'every report but the refused one is an event',
    )
    for (const address of ['alice.parent@example.org', 'bob@example.org'])
      t.notOk(everything.toLowerCase().includes(address), `no event holds ${address}`)
  },
)
