import { call } from './api.js'
import { badge, data, field, formValues, h, problem, table, when } from './dom.js'

// The auditor pages: the audit log's state, the event browser and the breach report. Every call
// goes to /v1/audit, which refuses any account without the auditor role.

export async function auditLog(view) {
  view.append(h('h2', {}, 'Audit log'))
  const headCard = h(
    'div',
    { class: 'card', id: 'audit-head' },
    h('p', { class: 'muted' }, 'Loading the latest signed head…'),
  )
  const verifyResult = h('div', { id: 'verify-result' })
  const verifyButton = h('button', { type: 'button', id: 'verify' }, 'Verify the whole log')
  view.append(
    h('h3', {}, 'Latest signed tree head'),
    headCard,
    h('h3', {}, 'Verification'),
    h(
      'div',
      { class: 'card' },
      h(
        'p',
        { class: 'muted' },
        'Recomputes the Merkle tree from every stored event and checks it against every signed head (as `kennel audit verify`).',
      ),
      verifyButton,
      verifyResult,
    ),
  )
  verifyButton.addEventListener('click', async () => {
    verifyResult.replaceChildren(h('p', { class: 'muted' }, 'Verifying…'))
    try {
      const r = await call('GET', '/v1/audit/verify')
      verifyResult.replaceChildren(
        h(
          'dl',
          {},
          h('dt', {}, 'Result'),
          h('dd', { id: 'verify-verdict' }, r.ok ? badge('intact', 'ok') : badge('altered', 'broken')),
          h('dt', {}, 'Events checked'),
          h('dd', {}, r.events),
          h('dt', {}, 'Signed heads checked'),
          h('dd', {}, r.headsChecked),
          h('dt', {}, 'Signed size verified'),
          h('dd', {}, r.signedSize),
          ...(r.firstBreak
            ? [
                h('dt', {}, 'First altered position'),
                h('dd', { id: 'first-break' }, String(r.firstBreak.position)),
                h('dt', {}, 'Kind'),
                h('dd', {}, r.firstBreak.kind),
                h('dt', {}, 'What was found'),
                h('dd', {}, r.firstBreak.message),
              ]
            : []),
        ),
      )
    } catch (err) {
      verifyResult.replaceChildren(problem(err))
    }
  })
  try {
    const { head } = await call('GET', '/v1/audit/head')
    headCard.replaceChildren(
      head
        ? h(
            'dl',
            {},
            h('dt', {}, 'Events covered'),
            h('dd', { id: 'head-size' }, head.size),
            h('dt', {}, 'Merkle root'),
            h('dd', { class: 'data' }, head.root),
            h('dt', {}, 'Time'),
            h('dd', {}, when(head.time)),
            h('dt', {}, 'Signing key'),
            h('dd', { class: 'data' }, head.keyId),
            h('dt', {}, 'Recorded at position'),
            h('dd', {}, head.position),
          )
        : h('p', { class: 'muted' }, 'No signed head yet: the projector signs one every few events.'),
    )
  } catch (err) {
    headCard.replaceChildren(problem(err))
    verifyButton.disabled = true
  }
}

const PAGE = 100

export async function events(view) {
  view.append(h('h2', {}, 'Events'))
  const form = h(
    'form',
    { id: 'event-filter', class: 'card inline' },
    field('Stream (prefix)', 'stream', { placeholder: 'device-toy-1', pattern: '[a-z][a-z0-9\\-]*' }),
    field('Type', 'type', { placeholder: 'DeviceRevoked' }),
    field('Since (ISO time)', 'since', { placeholder: '2026-01-01T00:00:00Z' }),
    field('Until (ISO time)', 'until', { placeholder: '2026-12-31T00:00:00Z' }),
    h('button', { type: 'submit' }, 'Show'),
  )
  const results = h('div', { id: 'events' })
  view.append(form, results)
  const columns = [
    ['Position', (e) => e.position],
    ['Time', (e) => when(e.time)],
    ['Stream', (e) => e.stream],
    ['Type', (e) => e.type],
    ['Actor', (e) => e.metadata?.actor ?? '—'],
    ['Data', (e) => data(e.data)],
  ]
  const show = async (from) => {
    const q = new URLSearchParams({ from: String(from), limit: String(PAGE) })
    for (const [k, v] of Object.entries(formValues(form))) if (v) q.set(k, v)
    try {
      const page = await call('GET', `/v1/audit/events?${q}`)
      // a full page may have more after it; a shorter one is the end of what matches
      const more = page.next !== undefined && page.events.length === PAGE
      results.replaceChildren(
        table(columns, page.events, { id: 'events-table', empty: 'no event matches' }),
        more
          ? h('p', {}, h('button', { type: 'button', onclick: () => show(page.next) }, 'Next page'))
          : h('p', { class: 'muted' }, 'End of the matching events.'),
      )
    } catch (err) {
      results.replaceChildren(problem(err))
    }
  }
  form.addEventListener('submit', (ev) => (ev.preventDefault(), show(0)))
  await show(0)
}

export async function breach(view) {
  view.append(h('h2', {}, 'Breach report'))
  const now = new Date()
  const form = h(
    'form',
    { id: 'breach-form', class: 'card inline' },
    field('Credential', 'credential', {
      required: true,
      placeholder: 'device:toy-1',
      pattern: '(device|cert|account|token):[A-Za-z0-9\\-]+',
      title: 'device:<id>, cert:<serial>, account:<id> or token:<session id>',
    }),
    field('Since', 'since', {
      required: true,
      value: new Date(now.getTime() - 30 * 86_400_000).toISOString().slice(0, 10),
    }),
    field('Until', 'until', {
      required: true,
      value: new Date(now.getTime() + 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z'),
    }),
    h('button', { type: 'submit' }, 'Run the report'),
  )
  const result = h('div', { id: 'breach-result' })
  const earlier = h('div', { id: 'breach-earlier' })
  view.append(
    h(
      'p',
      { class: 'muted' },
      'What a credential touched in a window, and who must be notified (as `kennel audit report`). Each report is recorded in the audit log.',
    ),
    form,
    result,
    h('h3', {}, 'Earlier reports'),
    earlier,
  )
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    result.replaceChildren(h('p', { class: 'muted' }, 'Reconstructing…'))
    try {
      // one request: the report and its notification list as CSV, recorded once
      const r = await call('POST', '/v1/audit/breach-reports?with=csv', { body: formValues(form) })
      result.replaceChildren(...report(r))
      await listReports(earlier)
    } catch (err) {
      result.replaceChildren(problem(err))
    }
  })
  await listReports(earlier)
}

/** the reports already run: their BreachReportGenerated events (ids and counts, no address) */
async function listReports(holder) {
  try {
    const { events } = await call('GET', '/v1/audit/events?stream=audit-reports&type=BreachReportGenerated&limit=1000')
    holder.replaceChildren(
      table(
        [
          ['Time', (e) => when(e.time)],
          ['Credential', (e) => e.data.credential],
          ['Window', (e) => `${when(e.data.since)} to ${when(e.data.until)}`],
          ['Households', (e) => e.data.householdIds.length],
          ['By', (e) => e.metadata?.actor ?? '—'],
          ['Report', (e) => e.data.reportId],
        ],
        events.reverse(),
        { id: 'breach-reports', empty: 'no report yet' },
      ),
    )
  } catch (err) {
    holder.replaceChildren(problem(err))
  }
}

function report(r) {
  const download = h('button', { type: 'button', id: 'download-csv' }, 'Download the notification list (CSV)')
  download.addEventListener('click', () => {
    const url = URL.createObjectURL(new Blob([r.csv], { type: 'text/csv' }))
    const a = h('a', { href: url, download: `breach-report-${r.reportId}.csv` })
    document.body.append(a)
    a.click()
    a.remove()
    setTimeout(() => URL.revokeObjectURL(url), 10_000)
  })
  return [
    h(
      'div',
      { class: 'card' },
      h(
        'dl',
        {},
        h('dt', {}, 'Report'),
        h('dd', { id: 'report-id' }, r.reportId),
        h('dt', {}, 'Credential'),
        h('dd', {}, r.credential),
        h('dt', {}, 'Window'),
        h('dd', {}, `${when(r.since)} to ${when(r.until)}`),
        h('dt', {}, 'Revoked'),
        h('dd', {}, r.revocation ? `${when(r.revocation.time)} (${r.revocation.type})` : 'not revoked'),
        h('dt', {}, 'Actions'),
        h('dd', {}, r.actions.length),
        h('dt', {}, 'Toys'),
        h('dd', {}, r.deviceIds.join(', ') || '—'),
        h('dt', {}, 'Recordings'),
        h('dd', {}, r.recordingIds.length),
      ),
      h('p', {}, download),
    ),
    h('h3', {}, 'Households touched'),
    table(
      [
        ['Household', (x) => x.householdId],
        ['Toys', (x) => x.deviceIds.join(', ')],
        [
          'Topics',
          (x) => x.topics.map((t) => `${t.action} ${t.topic} (${t.count}${t.denied ? ', denied' : ''})`).join('; '),
        ],
        ['Recordings', (x) => x.recordingIds.length],
        ['URLs', (x) => x.urls.length],
        ['Flags', (x) => x.flags.join(', ') || '—'],
      ],
      r.households,
      { id: 'breach-households', empty: 'no household' },
    ),
    h('h3', {}, 'Who must be notified'),
    table(
      [
        ['Account', (n) => n.accountId],
        ['Contact', (n) => n.contact ?? '(no address on record)'],
        ['Households', (n) => n.householdIds.join(', ') || '—'],
        ['Why', (n) => n.reasons.join('; ')],
      ],
      r.notifications,
      { id: 'breach-notifications', empty: 'nobody to notify' },
    ),
  ]
}
