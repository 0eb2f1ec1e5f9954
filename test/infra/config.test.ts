import path from 'node:path'
import t from 'tap'
import { configTable, loadConfig, publicUrlOf } from '../../infra/config.ts'
import { isKennelError } from '../../infra/errors.ts'

t.test('defaults: development, embedded store in ./data, loopback, 8883 and 8443', async (t) => {
  const c = loadConfig({})
  t.equal(c.env, 'development')
  t.equal(c.dataDir, path.resolve('data'))
  t.equal(c.eventStoreUrl, `sqlite:${path.resolve('data', 'events.sqlite')}`)
  t.equal(c.host, '127.0.0.1')
  t.equal(c.mqttPort, 8883)
  t.equal(c.apiPort, 8443)
  t.same(
    c.deviceApiLimits.map((w) => [w.points, w.durationSeconds]),
    [
      [60, 60],
      [200, 3600],
      [400, 86400],
    ],
  )
  t.ok(Object.isFrozen(c), 'frozen')
})

t.test('a bad value stops start-up with a message naming the variable', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['KENNEL_ENV', 'staging', /KENNEL_ENV must be one of development\|test\|production/],
    ['KENNEL_MQTT_PORT', '70000', /KENNEL_MQTT_PORT must be a TCP port/],
    ['KENNEL_API_PORT', '-1', /KENNEL_API_PORT/],
    ['KENNEL_EVENTSTORE', 'mongodb://open.example', /KENNEL_EVENTSTORE must be a URL starting with sqlite:/],
    ['KENNEL_DENYLIST', '10.0.0.0/33', /KENNEL_DENYLIST must be a comma-separated list of CIDRs/],
    ['KENNEL_DEVICE_API_LIMITS', '60/fortnight', /KENNEL_DEVICE_API_LIMITS must be limits like/],
    ['KENNEL_PRESIGN_TTL_SECONDS', '901', /KENNEL_PRESIGN_TTL_SECONDS must be an integer 1-900/],
    ['KENNEL_REDIS_URL', 'http://x', /KENNEL_REDIS_URL must be a URL with scheme redis: or rediss:/],
    ['KENNEL_MASTER_KEY', 'c2hvcnQ=', /KENNEL_MASTER_KEY must be a base64-encoded 32-byte key \(got "<redacted>"\)/],
    [
      'KENNEL_PUBLIC_URL',
      'http://api.toys.example',
      /KENNEL_PUBLIC_URL must be an https URL with no path, query or fragment/,
    ],
    ['KENNEL_PUBLIC_URL', 'https://api.toys.example/v1', /KENNEL_PUBLIC_URL must be an https URL/],
    ['KENNEL_PUBLIC_URL', 'https://api.toys.example?x=1', /KENNEL_PUBLIC_URL must be an https URL/],
    ['KENNEL_PUBLIC_URL', 'https://api.toys.example/#top', /KENNEL_PUBLIC_URL must be an https URL/],
    ['KENNEL_PUBLIC_URL', 'https://user:pw@api.toys.example', /KENNEL_PUBLIC_URL must be an https URL/],
    ['KENNEL_PUBLIC_URL', 'api.toys.example', /KENNEL_PUBLIC_URL must be an https URL/],
    ['KENNEL_SMTP_URL', 'http://mail.example', /KENNEL_SMTP_URL must be smtps:\/\/.* \(got "<redacted>"\)/],
    [
      'KENNEL_SMTP_URL',
      'smtp://u:secret@mail.example:587?ignoreTLS=true',
      /KENNEL_SMTP_URL must be .*without a query string \(got "<redacted>"\)/,
    ],
    [
      'KENNEL_MAIL_FROM',
      'kennel <a@toys.example>\r\nBcc: everyone@example.org',
      /KENNEL_MAIL_FROM must be one address/,
    ],
    ['KENNEL_MAIL_FROM', 'a@b@toys.example', /KENNEL_MAIL_FROM/],
    ['KENNEL_VERIFICATION_TTL_HOURS', '0', /KENNEL_VERIFICATION_TTL_HOURS must be an integer 1-168/],
  ]
  for (const [name, value, message] of cases) {
    const err = (() => {
      try {
        loadConfig({ [name]: value })
      } catch (e) {
        return e
      }
    })()
    t.ok(isKennelError(err, 'KENNEL_ERR_CONFIG'), `${name}=${value} refused`)
    t.match((err as Error).message, message)
  }
})

t.test('port 0 means any free port; a denylist parses', async (t) => {
  const c = loadConfig({ KENNEL_MQTT_PORT: '0', KENNEL_DENYLIST: '198.51.100.0/24, 2001:db8::/32,203.0.113.7' })
  t.equal(c.mqttPort, 0)
  t.same(c.denylist, ['198.51.100.0/24', '2001:db8::/32', '203.0.113.7'])
})

t.test(
  'production refuses missing secrets, an unauthenticated or plaintext database, and default contacts (R7, R8)',
  async (t) => {
    t.throws(
      () => loadConfig({ KENNEL_ENV: 'production' }),
      /production requires KENNEL_TLS_CERT, KENNEL_TLS_KEY, KENNEL_CA_CERT, KENNEL_CA_KEY, KENNEL_MASTER_KEY/,
    )
    const ready = {
      KENNEL_ENV: 'production',
      KENNEL_TLS_CERT: '/etc/kennel/tls.crt',
      KENNEL_TLS_KEY: '/etc/kennel/tls.key',
      KENNEL_CA_CERT: '/etc/kennel/ca.crt',
      KENNEL_CA_KEY: '/etc/kennel/ca.key',
      KENNEL_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'),
      KENNEL_SECURITY_CONTACT: 'mailto:security@toys.example',
      KENNEL_SMTP_URL: 'smtps://kennel:secret@mail.toys.example',
      KENNEL_MAIL_FROM: 'kennel <no-reply@toys.example>',
    }
    t.equal(loadConfig(ready).env, 'production')
    t.throws(() => loadConfig({ ...ready, KENNEL_SMTP_URL: '' }), /KENNEL_SMTP_URL must be set in production/)
    t.throws(() => loadConfig({ ...ready, KENNEL_MAIL_FROM: '' }), /KENNEL_MAIL_FROM/)
    t.throws(
      () => loadConfig({ ...ready, KENNEL_MAIL_FROM: 'kennel <no-reply@kennel.invalid>' }),
      /KENNEL_MAIL_FROM must be set in production/,
    )
    t.equal(
      loadConfig({ ...ready, KENNEL_SMTP_URL: 'smtp://kennel:secret@mail.toys.example:587' }).smtpUrl,
      'smtp://kennel:secret@mail.toys.example:587',
      'smtp:// is accepted: STARTTLS is always required',
    )
    t.throws(
      () => loadConfig({ ...ready, KENNEL_EVENTSTORE: 'postgres://kennel@db/kennel' }),
      /must authenticate .* sslmode/,
    )
    t.throws(
      () => loadConfig({ ...ready, KENNEL_EVENTSTORE: 'postgres://kennel:pw@db/kennel?sslmode=disable' }),
      /sslmode/,
    )
    t.equal(
      loadConfig({
        ...ready,
        KENNEL_EVENTSTORE: 'postgres://kennel:pw@db/kennel?sslmode=verify-full',
      }).eventStore.startsWith('postgres'),
      true,
    )
    t.throws(() => loadConfig({ ...ready, KENNEL_REDIS_URL: 'redis://cache:6379' }), /rediss:/)
    t.throws(
      () => loadConfig({ ...ready, KENNEL_SECURITY_CONTACT: 'mailto:security@example.com' }),
      /KENNEL_SECURITY_CONTACT/,
    )
    for (const host of ['0.0.0.0', '::'])
      t.throws(
        () => loadConfig({ ...ready, KENNEL_HOST: host }),
        /KENNEL_PUBLIC_URL must be set in production when KENNEL_HOST is/,
        `a wildcard ${host} needs a public URL`,
      )
    t.equal(
      loadConfig({ ...ready, KENNEL_HOST: '0.0.0.0', KENNEL_PUBLIC_URL: 'https://api.toys.example' }).publicUrl,
      'https://api.toys.example',
    )
  },
)

t.test('the README configuration table lists every variable', async (t) => {
  const table = configTable()
  t.match(table, /\| `KENNEL_ENV` \| `development` \|/)
  t.match(table, /\| `KENNEL_REDIS_URL` \| \(unset\) \|/)
})

t.test('the README documents every configuration variable', async (t) => {
  const readme = (await import('node:fs')).readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  for (const line of configTable().split('\n').slice(2)) {
    const name = /`(KENNEL_[A-Z0-9_]+)`/.exec(line)![1]!
    t.ok(readme.includes(`\`${name}\``), `${name} is in the README`)
  }
})

t.test("KENNEL_PUBLIC_URL: the origin of the API's URLs, by default the listener's own address", async (t) => {
  t.equal(
    loadConfig({ KENNEL_PUBLIC_URL: 'https://API.toys.example:443/' }).publicUrl,
    'https://api.toys.example',
    'kept as an origin',
  )
  t.equal(
    publicUrlOf(loadConfig({ KENNEL_PUBLIC_URL: 'https://api.toys.example:8443' }), 40000),
    'https://api.toys.example:8443',
    'the configured one wins over the bound port',
  )
  t.equal(
    publicUrlOf(loadConfig({}), 40000),
    'https://127.0.0.1:40000',
    'unset: KENNEL_HOST and the port the API is bound to',
  )
  t.equal(publicUrlOf(loadConfig({ KENNEL_HOST: '::1' }), 8443), 'https://[::1]:8443', 'an IPv6 listener in brackets')
})

t.test(
  'KENNEL_ROLES: every role by default; an unknown role or an API that cannot reach toys stops start-up',
  async (t) => {
    t.same(loadConfig({}).roles, ['broker', 'api', 'projector'])
    t.same(
      loadConfig({ KENNEL_ROLES: ' projector , broker ' }).roles,
      ['broker', 'projector'],
      'in a fixed order, spaces ignored',
    )
    t.throws(() => loadConfig({ KENNEL_ROLES: 'broker,worker' }), {
      code: 'KENNEL_ERR_CONFIG',
      message: /KENNEL_ROLES names unknown role "worker"/,
    })
    t.throws(() => loadConfig({ KENNEL_ROLES: ' , ' }), {
      code: 'KENNEL_ERR_CONFIG',
      message: /KENNEL_ROLES must be a comma-separated list/,
    })
    t.throws(
      () => loadConfig({ KENNEL_ROLES: 'api' }),
      { code: 'KENNEL_ERR_CONFIG', message: /set KENNEL_REDIS_URL/ },
      'an API without a broker and without Redis could not tell toys anything',
    )
    t.same(loadConfig({ KENNEL_ROLES: 'api', KENNEL_REDIS_URL: 'redis://127.0.0.1:6379' }).roles, ['api'])
  },
)
