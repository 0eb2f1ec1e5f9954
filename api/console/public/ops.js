import { call, stream } from './api.js'
import { badge, data, field, formValues, h, problem, table, tableRow, when } from './dom.js'

// The ops pages: the fleet, one toy (its timeline and revocation), live security alerts. Every
// call goes to /v1/ops, which refuses any account without the ops role.

const session = (d) =>
  d.connected ? badge('connected') : d.lastSeenAt ? badge('closed') : badge('never connected', 'never')

export async function fleet(view) {
  view.append(h('h2', {}, 'Fleet'))
  let devices
  try {
    ;({ devices } = await call('GET', '/v1/ops/devices'))
  } catch (err) {
    return view.append(problem(err))
  }
  const columns = [
    ['Toy', (d) => h('a', { href: `#/toys/${d.deviceId}` }, d.deviceId)],
    ['Status', (d) => badge(d.status)],
    ['Session', session],
    ['Household', (d) => d.householdId ?? '—'],
    ['Certificate expires', (d) => when(d.certificateExpiresAt)],
    ['Last seen', (d) => when(d.lastSeenAt)],
  ]
  const search = h('input', {
    type: 'search',
    id: 'fleet-search',
    placeholder: 'Search by toy, household or status',
    'aria-label': 'Search the fleet',
  })
  const count = h('p', { class: 'muted' })
  const holder = h('div')
  const show = () => {
    const q = search.value.trim().toLowerCase()
    const shown = devices.filter(
      (d) => !q || [d.deviceId, d.householdId ?? '', d.status].some((v) => v.toLowerCase().includes(q)),
    )
    count.textContent = `${shown.length} of ${devices.length} toys`
    holder.replaceChildren(
      table(
        columns,
        shown.sort((a, b) => a.deviceId.localeCompare(b.deviceId)),
        { id: 'fleet', empty: 'no toy matches' },
      ),
    )
  }
  search.addEventListener('input', show)
  view.append(h('div', { class: 'card' }, search, count, holder))
  show()
}

export async function toy(view, deviceId) {
  view.append(h('h2', {}, `Toy ${deviceId}`))
  const details = h('div', { class: 'card', id: 'toy-details' })
  const timeline = h('div', { id: 'timeline' })
  const result = h('div', { id: 'revoke-result' })
  const form = h(
    'form',
    { id: 'revoke', class: 'card inline' },
    field('Reason for revoking (recorded in DeviceRevoked)', 'reason', {
      required: true,
      minlength: 3,
      maxlength: 500,
      placeholder: 'lost at the park',
    }),
    h('button', { type: 'submit', class: 'danger' }, 'Revoke toy'),
  )
  view.append(details, h('h3', {}, 'Revoke'), form, result, h('h3', {}, 'Timeline'), timeline)

  const load = async () => {
    const found = await call('GET', `/v1/ops/devices/${encodeURIComponent(deviceId)}`)
    const d = found.device
    details.replaceChildren(
      h(
        'dl',
        {},
        h('dt', {}, 'Status'),
        h('dd', { id: 'toy-status' }, badge(d.status), d.revokeReason ? ` — ${d.revokeReason}` : ''),
        h('dt', {}, 'Session'),
        h(
          'dd',
          { id: 'toy-session' },
          session(d),
          d.connected
            ? ` since ${when(d.lastConnectedAt)}`
            : d.lastDisconnectedAt
              ? ` at ${when(d.lastDisconnectedAt)}`
              : '',
        ),
        h('dt', {}, 'Household'),
        h('dd', {}, d.householdId ?? '—'),
        h('dt', {}, 'Enrolled'),
        h('dd', {}, when(d.enrolledAt)),
        h('dt', {}, 'Certificate expires'),
        h('dd', {}, when(d.certificateExpiresAt)),
        h('dt', {}, 'Certificates'),
        h(
          'dd',
          {},
          found.certificates
            .map((c) => `${c.serial}${c.revokedAt ? ' (revoked)' : c.supersededAt ? ' (superseded)' : ''}`)
            .join(', ') || '—',
        ),
      ),
    )
    timeline.replaceChildren(
      table(
        [
          ['Time', (e) => when(e.time)],
          ['Event', (e) => e.type],
          ['Stream', (e) => e.stream],
          ['Actor', (e) => e.actor ?? '—'],
          ['Data', (e) => data(e.data)],
        ],
        found.timeline,
        { id: 'timeline-table' },
      ),
    )
    return d
  }
  try {
    await load()
  } catch (err) {
    details.replaceChildren(problem(err))
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const { reason } = formValues(form)
    result.replaceChildren(h('p', { class: 'muted' }, 'Revoking…'))
    try {
      await call('POST', `/v1/ops/devices/${encodeURIComponent(deviceId)}/revoke`, { body: { reason } })
    } catch (err) {
      return result.replaceChildren(problem(err))
    }
    result.replaceChildren(
      h('p', {}, badge('revoked'), ' DeviceRevoked recorded; waiting for the broker to close the session…'),
    )
    // the broker closes the toy's session when it sees DeviceRevoked, and records DeviceDisconnected
    for (let i = 0; i < 40; i++) {
      const d = await load()
      if (!d.connected)
        return result.replaceChildren(
          h(
            'p',
            { id: 'revoke-done' },
            badge('revoked'),
            ' ',
            badge('closed'),
            d.lastDisconnectedAt
              ? ` The session was closed at ${when(d.lastDisconnectedAt)}.`
              : ' The toy had no open session.',
          ),
        )
      await new Promise((r) => setTimeout(r, 250))
    }
    result.replaceChildren(
      h(
        'p',
        { class: 'error' },
        'Revoked, but the broker has not reported the session closed yet; reload the toy to check.',
      ),
    )
  })
}

export async function alerts(view, _param, signal) {
  view.append(h('h2', {}, 'Security alerts'), h('p', { class: 'muted', id: 'alerts-state' }, 'Connecting…'))
  const columns = [
    ['Time', (a) => when(a.time)],
    ['Severity', (a) => badge(a.data.severity ?? '—', a.data.severity)],
    ['Rule', (a) => a.data.rule],
    ['Key', (a) => a.data.key],
    ['Summary', (a) => a.data.summary ?? ''],
  ]
  const list = table(columns, [], { id: 'alerts', empty: 'no alert' })
  view.append(h('div', { class: 'card' }, list))
  const body = list.querySelector('tbody')
  let first = true
  try {
    const state = view.querySelector('#alerts-state')
    const live = () => (state.textContent = 'Live: new alerts appear at the top as the security monitor raises them.')
    await stream(
      '/v1/ops/alerts/live?limit=50',
      signal,
      (alert) => {
        if (first) body.replaceChildren()
        first = false
        body.prepend(tableRow(columns, alert))
      },
      live,
    )
  } catch (err) {
    if (err.name !== 'AbortError') view.replaceChildren(h('h2', {}, 'Security alerts'), problem(err))
  }
}
