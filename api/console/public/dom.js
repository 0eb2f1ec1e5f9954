// Building the page: elements with text content only, never markup parsed from data, so a
// toy's topic or a reason typed by someone cannot become markup or script.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value)
    else el.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children.flat())
    if (child !== undefined && child !== null && child !== false)
      el.append(child instanceof Node ? child : String(child))
  return el
}

export const when = (iso) =>
  iso
    ? new Date(iso)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z')
    : '—'

export const badge = (text, kind = text) => h('span', { class: `badge ${kind}` }, text)

/** a table: columns are [heading, (row) => cell] */
export function table(columns, rows, { id, empty = 'nothing yet' } = {}) {
  return h(
    'table',
    { id },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        columns.map(([heading]) => h('th', {}, heading)),
      ),
    ),
    h(
      'tbody',
      {},
      rows.length === 0
        ? h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, empty))
        : rows.map((row) => tableRow(columns, row)),
    ),
  )
}

export const tableRow = (columns, row) =>
  h(
    'tr',
    {},
    columns.map(([, cell]) => h('td', {}, cell(row))),
  )

export const data = (value) => h('span', { class: 'data' }, JSON.stringify(value))

/** an API refusal or failure, as the API said it */
export function problem(err) {
  if (err?.status === 401 || err?.status === 403)
    return h('p', { class: 'refused', role: 'alert' }, `Refused by the API (${err.status} ${err.code}): ${err.message}`)
  return h(
    'p',
    { class: 'error', role: 'alert' },
    err?.status ? `${err.status} ${err.code}: ${err.message}` : String(err?.message ?? err),
  )
}

export const field = (label, name, attrs = {}) => h('label', {}, label, h('input', { name, ...attrs }))

export function formValues(form) {
  return Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, String(v).trim()]))
}
