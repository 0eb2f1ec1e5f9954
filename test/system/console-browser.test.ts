import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import { loadConfig } from '../../infra/config.ts'
import { createLogger } from '../../infra/log.ts'
import { everyRole, startKennel } from '../../bin/start.ts'
import { grantRole } from '../../bin/commands/account.ts'
import { enrollDevice } from '../../devices/enroll.ts'
import { connectToy } from '../../devices/simulator/toy.ts'
import { findVerificationToken } from '../../api/accounts/tokens.ts'
import { outboxDir, readOutbox } from '../../infra/mail/outbox.ts'
import { request } from '../api/helpers.ts'

// The console in a real browser (headless Chromium driven by playwright-core), against the whole
// system as `kennel start` wires it: ops watches a connected toy, revokes it and sees its session
// close, then sees the live alert its next attempt raises; an auditor verifies the log, browses
// events and runs a breach report; each is refused the other's pages by the API. Any script the
// page's content security policy blocked fails the test. KENNEL_CONSOLE_SCREENSHOTS=1 writes
// docs/console/*.png.

const CHROMIUM = process.env.KENNEL_CHROMIUM ?? '/usr/bin/chromium'
const SHOTS = process.env.KENNEL_CONSOLE_SCREENSHOTS === '1' ? path.resolve('docs/console') : undefined
const PASSWORD = 'violet-Harbour-43-quiet-Lantern'

if (!fs.existsSync(CHROMIUM)) t.plan(0, `no Chromium at ${CHROMIUM}: apt-get install chromium, or set KENNEL_CHROMIUM`)
else await consoleInBrowser()

async function consoleInBrowser(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-console-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const config = loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: dir,
    KENNEL_MQTT_PORT: '0',
    KENNEL_API_PORT: '0',
    KENNEL_METRICS_PORT: '0',
    KENNEL_LOG_LEVEL: 'silent',
    KENNEL_AUDIT_HEAD_EVERY_EVENTS: '5',
  })
  const kennel = everyRole(await startKennel(config, createLogger('silent')))
  t.teardown(() => kennel.stop())
  const ca = kennel.ca.trustedPem
  const api = (method: string, p: string, token?: string, body?: unknown) =>
    request(kennel.ports.api, { method, path: p, ca, body, headers: token ? { authorization: `Bearer ${token}` } : {} })

  async function account(email: string, role?: 'ops' | 'auditor'): Promise<string> {
    await api('POST', '/v1/accounts', undefined, { email, password: PASSWORD })
    const mail = readOutbox(outboxDir(dir))
      .filter((m) => m.headers.to === email)
      .at(-1)
    const verified = await api('POST', '/v1/accounts/verify', undefined, {
      token: findVerificationToken(mail?.text ?? ''),
    })
    if (role) await grantRole({ config, store: kennel.store, actor: 'cli:test' }, email, role)
    const token = (await api('POST', '/v1/sessions', undefined, { email, password: PASSWORD })).json().token as string
    // the API follows the store: wait until it has applied the grant before the browser logs in
    for (
      let i = 0;
      role && i < 100 && !(await api('GET', '/v1/sessions/current', token)).json().roles.includes(role);
      i++
    )
      await new Promise((r) => setTimeout(r, 20))
    return verified.json().accountId as string
  }

  const parentToken = await (async () => {
    await account('parent@console.example')
    return (
      await api('POST', '/v1/sessions', undefined, { email: 'parent@console.example', password: PASSWORD })
    ).json().token as string
  })()
  const householdId = (await api('POST', '/v1/households', parentToken, { name: 'The Smiths' })).json()
    .householdId as string
  const enrol = (id: string) => enrollDevice({ store: kennel.store, ca: kennel.ca, config, actor: 'cli:test' }, id)
  const credentials = await enrol('toy-console')
  await api('POST', `/v1/households/${householdId}/devices`, parentToken, { claimCode: credentials.claimCode })
  await enrol('toy-spare')
  const opsId = await account('ops@console.example', 'ops')
  await account('auditor@console.example', 'auditor')
  const mqttUrl = `mqtts://localhost:${kennel.ports.mqtt}`
  const toyCredentials = {
    deviceId: 'toy-console',
    keyPem: credentials.keyPem,
    certPem: credentials.certPem,
    caPem: ca,
  }
  const toy = await connectToy(mqttUrl, toyCredentials)
  t.teardown(() => toy.end())
  await toy.publishTelemetry(1)

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.teardown(() => browser.close())
  if (SHOTS) fs.mkdirSync(SHOTS, { recursive: true })
  const shot = async (page: Page, name: string, fullPage = true) =>
    void (SHOTS && (await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage })))

  /** a fresh page logged in as `email`; `blocked` collects what the browser refused to run or load */
  async function logIn(email: string): Promise<{ page: Page; blocked: string[] }> {
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      acceptDownloads: true,
      viewport: { width: 1280, height: 800 },
    })
    const page = await context.newPage()
    page.setDefaultTimeout(15_000)
    const blocked: string[] = []
    page.on(
      'console',
      (m) => void (m.type() === 'error' && !/status of 40[13]/.test(m.text()) && blocked.push(m.text())),
    )
    page.on('pageerror', (err) => void blocked.push(err.message))
    await page.goto(`https://localhost:${kennel.ports.api}/console`)
    if (email === 'ops@console.example') await shot(page, 'login')
    await page.fill('#login input[name=email]', email)
    await page.fill('#login input[name=password]', PASSWORD)
    await page.click('#login button[type=submit]')
    await page.waitForSelector('#nav a')
    return { page, blocked }
  }

  t.test(
    'ops: the fleet, a toy revoked with a reason and its session visibly closing, live alerts; the audit pages are refused',
    async (t) => {
      const { page, blocked } = await logIn('ops@console.example')
      t.same(await page.locator('#nav a').allTextContents(), ['Fleet', 'Alerts'], 'the navigation shows the ops pages')
      const row = page.locator('#fleet tbody tr', { hasText: 'toy-console' })
      await row.waitFor()
      t.match(await row.textContent(), /toy-console.*active.*connected/, 'the toy is active and connected')
      t.match(await row.textContent(), householdId, 'with its household')
      t.equal(await page.locator('#fleet tbody tr').count(), 2)
      await shot(page, 'fleet')
      await page.fill('#fleet-search', 'spare')
      t.same(
        await page.locator('#fleet tbody tr td:first-child').allTextContents(),
        ['toy-spare'],
        'search narrows the fleet',
      )

      await page.goto(`https://localhost:${kennel.ports.api}/console#/toys/toy-console`)
      await page.locator('#timeline-table', { hasText: 'DeviceConnected' }).waitFor()
      t.match(await page.locator('#toy-session').textContent(), /connected/)
      await page.fill('#revoke input[name=reason]', 'left on the bus, reported stolen')
      await page.click('#revoke button[type=submit]')
      await page.locator('#revoke-done').waitFor()
      t.match(
        await page.locator('#revoke-done').textContent(),
        /revoked.*closed.*session was closed at/,
        'the page shows the toy revoked and its session closed',
      )
      await toy.closed
      t.pass('the simulated toy was disconnected')
      await page.locator('#timeline-table', { hasText: 'DeviceDisconnected' }).waitFor()
      t.match(await page.locator('#toy-status').textContent(), /revoked.*left on the bus/)
      await shot(page, 'toy')
      const revoked = (await kennel.store.readAll({ filter: { types: ['DeviceRevoked'] } })).map((e) => ({
        data: e.data as { deviceId: string; reason: string },
        actor: e.metadata.actor,
      }))
      t.match(
        revoked,
        [{ data: { deviceId: 'toy-console', reason: 'left on the bus, reported stolen' }, actor: `account:${opsId}` }],
        'the same DeviceRevoked event as the API and CLI, by the ops account',
      )

      await page.click('#nav a[data-path=alerts]')
      await page.locator('#alerts-state', { hasText: 'Live' }).waitFor()
      await t.rejects(
        connectToy(mqttUrl, toyCredentials, { connectTimeoutMs: 5000 }),
        'the revoked toy tries again and is refused',
      )
      const alert = page.locator('#alerts tbody tr', { hasText: 'revoked-certificate-attempt' })
      await alert.waitFor()
      t.match(await alert.textContent(), /critical|warning/, 'the alert the attempt raised appears without reloading')
      await shot(page, 'alerts')

      for (const hash of ['audit', 'events', 'breach']) {
        await page.goto(`https://localhost:${kennel.ports.api}/console#/${hash}`)
        const refused = page.locator('.refused').first()
        await refused
          .waitFor()
          .catch(async (err) => (t.comment(await page.locator('body').innerHTML()), Promise.reject(err)))
        t.match(await refused.textContent(), /403 KENNEL_ERR_FORBIDDEN.*auditor role/, `#/${hash}: refused by the API`)
      }
      t.same(blocked, [], 'nothing was blocked by the content security policy, no script error')
    },
  )

  t.test(
    'auditor: the audit log verified, events by type, a breach report downloaded; revoking is refused',
    async (t) => {
      const { page, blocked } = await logIn('auditor@console.example')
      t.same(await page.locator('#nav a').allTextContents(), ['Audit log', 'Events', 'Breach report'])
      await page.locator('#head-size').waitFor()
      t.match(await page.locator('#head-size').textContent(), /^\d+$/, 'the latest signed head')
      await page.click('#verify')
      await page.locator('#verify-verdict').waitFor()
      t.equal(await page.locator('#verify-verdict').textContent(), 'intact')
      await shot(page, 'audit')

      await page.click('#nav a[data-path=events]')
      await page.fill('#event-filter input[name=type]', 'DeviceRevoked')
      await page.click('#event-filter button[type=submit]')
      await page.waitForFunction(() => document.querySelectorAll('#events-table tbody tr').length === 1)
      t.match(
        await page.locator('#events-table tbody tr').textContent(),
        /DeviceRevoked.*left on the bus/,
        'one DeviceRevoked',
      )
      await shot(page, 'events')

      await page.click('#nav a[data-path=breach]')
      await page.fill('#breach-form input[name=credential]', 'device:toy-console')
      await page.click('#breach-form button[type=submit]')
      await page.locator('#breach-notifications', { hasText: 'parent@console.example' }).waitFor()
      t.match(await page.locator('#breach-households').textContent(), householdId, 'the household the toy belongs to')
      t.match(await page.locator('#breach-households').textContent(), /publish toys\/toy-console\/telemetry/)
      const reportId = (await page.locator('#report-id').textContent())!
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-csv')])
      t.equal(download.suggestedFilename(), `breach-report-${reportId}.csv`)
      const csv = fs.readFileSync((await download.path())!, 'utf8')
      t.match(csv, /^report_id,credential,since,until,account_id,contact,/)
      t.match(
        csv,
        new RegExp(`${reportId},device:toy-console,.*parent@console\\.example`),
        'the notification list of the report shown',
      )
      t.equal(
        (await kennel.store.readAll({ filter: { types: ['BreachReportGenerated'] } })).length,
        1,
        'one report, recorded once',
      )
      await shot(page, 'breach')

      await page.goto(`https://localhost:${kennel.ports.api}/console#/toys/toy-spare`)
      await page.locator('#toy-details .refused').waitFor()
      t.match(await page.locator('#toy-details .refused').textContent(), /403 KENNEL_ERR_FORBIDDEN.*ops role/)
      await page.fill('#revoke input[name=reason]', 'an auditor trying')
      await page.click('#revoke button[type=submit]')
      await page.locator('#revoke-result .refused').waitFor()
      t.match(
        await page.locator('#revoke-result .refused').textContent(),
        /403 KENNEL_ERR_FORBIDDEN.*ops role/,
        'the revoke is refused by the API',
      )
      t.equal(
        (await kennel.store.readAll({ filter: { types: ['DeviceRevoked'] } })).length,
        1,
        'toy-spare was not revoked',
      )
      await page.goto(`https://localhost:${kennel.ports.api}/console#/fleet`)
      await page.locator('.refused').waitFor()

      // someone with write access to the database file softens the revocation's reason
      const revocation = (await kennel.store.readAll({ filter: { types: ['DeviceRevoked'] } }))[0]!
      const db = new Database(kennel.store.file!)
      db.exec('DROP TRIGGER events_are_immutable')
      db.prepare(`UPDATE events SET data = json_set(data, '$.reason', 'routine replacement') WHERE position = ?`).run(
        revocation.position,
      )
      db.close()
      await page.click('#nav a[data-path=audit]')
      await page.click('#verify')
      await page.locator('#first-break').waitFor()
      t.equal(await page.locator('#verify-verdict').textContent(), 'altered')
      t.equal(
        await page.locator('#first-break').textContent(),
        String(revocation.position),
        'the first altered position is the edited revocation',
      )
      await shot(page, 'audit-altered')
      t.same(blocked, [], 'nothing was blocked by the content security policy, no script error')
    },
  )

  t.test(
    'the token lives only in the page: nothing stored, a reload logs out, logging out ends the session',
    async (t) => {
      const { page } = await logIn('ops@console.example')
      t.same(await page.context().cookies(), [], 'no cookie')
      t.same(await page.evaluate(() => [localStorage.length, sessionStorage.length]), [0, 0], 'no web storage')
      const ended = async () => (await kennel.store.readAll({ filter: { types: ['SessionEnded'] } })).length
      const before = await ended()
      await page.click('#logout')
      await page.locator('#login').waitFor()
      t.equal(await ended(), before + 1, 'the session was ended at the API')
      await page.fill('#login input[name=email]', 'ops@console.example')
      await page.fill('#login input[name=password]', PASSWORD)
      await page.click('#login button[type=submit]')
      await page.locator('#fleet').waitFor()
      await page.reload()
      await page.locator('#login').waitFor()
      t.equal(await page.locator('#nav').isHidden(), true, 'after a reload the page knows no token')
    },
  )

  t.test('Swagger UI at /docs renders the API under its own policy, with nothing blocked', async (t) => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } })
    const page = await context.newPage()
    const blocked: string[] = []
    page.on('console', (m) => void (m.type() === 'error' && blocked.push(m.text())))
    page.on('pageerror', (err) => void blocked.push(err.message))
    await page.goto(`https://localhost:${kennel.ports.api}/docs`)
    await page.locator('.swagger-ui .info .title', { hasText: 'kennel API' }).waitFor({ timeout: 15_000 })
    await page.locator('.opblock-summary-path', { hasText: '/v1/ops/devices/{deviceId}/revoke' }).first().waitFor()
    await shot(page, 'docs', false)
    t.same(blocked, [], 'nothing was blocked by the content security policy, no script error')
  })
}
