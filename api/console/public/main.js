import { ApiError, logIn, logOut, loggedIn } from './api.js'
import { formValues, h, problem } from './dom.js'
import { alerts, fleet, toy } from './ops.js'
import { auditLog, breach, events } from './audit.js'

// The console: log in, then one page per hash route. The navigation shows the pages of the
// account's roles; any page can still be opened by its address, and then the API refuses it.

const pages = [
  { path: 'fleet', title: 'Fleet', role: 'ops', render: fleet },
  { path: 'toys', title: 'Toy', role: 'ops', render: toy, hidden: true },
  { path: 'alerts', title: 'Alerts', role: 'ops', render: alerts },
  { path: 'audit', title: 'Audit log', role: 'auditor', render: auditLog },
  { path: 'events', title: 'Events', role: 'auditor', render: events },
  { path: 'breach', title: 'Breach report', role: 'auditor', render: breach },
]

const view = document.getElementById('view')
const nav = document.getElementById('nav')
const loginForm = document.getElementById('login')
let me = null
let leaving = new AbortController()

async function route() {
  if (!loggedIn()) return
  leaving.abort()
  leaving = new AbortController()
  const [, path = '', param] = location.hash.match(/^#\/([a-z]+)(?:\/([^/]+))?$/) ?? []
  const page = pages.find((p) => p.path === path) ?? pages.find((p) => me.roles.includes(p.role) && !p.hidden)
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.path === page?.path)
  view.replaceChildren()
  if (!page)
    return view.append(
      h(
        'p',
        { class: 'refused' },
        'This account has neither the ops nor the auditor role: the console has nothing to show it.',
      ),
    )
  document.title = `${page.title} — kennel console`
  try {
    await page.render(view, param && decodeURIComponent(param), leaving.signal)
  } catch (err) {
    view.append(problem(err))
    if (err instanceof ApiError && err.status === 401) showLogin()
  }
}

function showLogin() {
  me = null
  nav.hidden = true
  document.getElementById('who').hidden = true
  view.replaceChildren(loginForm)
}

loginForm.addEventListener('submit', async (ev) => {
  ev.preventDefault()
  const { email, password } = formValues(loginForm)
  const error = document.getElementById('login-error')
  error.textContent = ''
  try {
    me = await logIn(email, password)
  } catch (err) {
    error.textContent = err.message
    return
  }
  loginForm.reset()
  nav.replaceChildren(
    ...pages
      .filter((p) => me.roles.includes(p.role) && !p.hidden)
      .map((p) => h('a', { href: `#/${p.path}`, 'data-path': p.path }, p.title)),
  )
  nav.hidden = false
  document.getElementById('who-name').textContent = `${email} (${me.roles.join(', ') || 'no role'})`
  document.getElementById('who').hidden = false
  await route()
})

document.getElementById('logout').addEventListener('click', async () => {
  leaving.abort()
  await logOut().catch(() => {})
  showLogin()
})

window.addEventListener('hashchange', route)
