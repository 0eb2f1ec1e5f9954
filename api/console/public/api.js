// The API as the console sees it: the session token lives only in this module's memory (never in
// storage or a cookie, so no other page and no cross-site request can use it), and every call
// sends it as a bearer token to this origin.

let token = null

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

export const loggedIn = () => token !== null

export async function call(method, path, { body, accept } = {}) {
  const headers = { accept: accept ?? 'application/json' }
  if (token) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
  })
  if (res.status === 204) return null
  const type = res.headers.get('content-type') ?? ''
  const payload = type.includes('json') ? await res.json() : await res.text()
  if (!res.ok)
    throw new ApiError(res.status, payload?.error?.code ?? 'HTTP', payload?.error?.message ?? String(payload))
  return payload
}

export async function logIn(email, password) {
  const { token: issued } = await call('POST', '/v1/sessions', { body: { email, password } })
  token = issued
  return call('GET', '/v1/sessions/current')
}

export async function logOut() {
  try {
    await call('DELETE', '/v1/sessions/current')
  } finally {
    token = null
  }
}

/** server-sent events from a route that needs the token (EventSource cannot send it) */
export async function stream(path, signal, onEvent, onOpen) {
  const res = await fetch(path, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` },
    signal,
    cache: 'no-store',
    credentials: 'omit',
  })
  if (!res.ok) {
    const payload = await res.json()
    throw new ApiError(res.status, payload?.error?.code ?? 'HTTP', payload?.error?.message ?? '')
  }
  onOpen?.()
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += value
    let end
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n')
      if (data) onEvent(JSON.parse(data))
    }
  }
}
