import { byId, envText, isSecretRef, items, names, privateSubnets, serviceGroups, type DataStore, type Definition, type Problem, type Rule } from '../definition.ts'

// R7: the database and Redis sit in private subnets, admit only the kennel processes, and refuse
// clients without TLS and credentials. CloudPets' MongoDB had a public address, no firewall and
// no password.

const MISSING_DB: Problem = { path: 'database', message: 'no database section: nothing proves the event store is private' }

/** every ingress rule of the store's groups is exactly tcp/port from a kennel service group */
function onlyFromApp(d: Definition, store: DataStore, path: string, port: number): Problem[] {
  const app = serviceGroups(d)
  const groups = names(store.securityGroups, `${path}.securityGroups`)
  if (groups.length === 0) return [{ path: `${path}.securityGroups`, message: 'no security group: who may connect is undefined' }]
  return groups.flatMap((id) => {
    const sg = byId(d.securityGroups, 'securityGroups', id)
    if (sg === undefined) return [{ path: `${path}.securityGroups`, message: `security group ${id} is not defined` }]
    return items(sg.ingress, `securityGroups[${id}].ingress`).flatMap(([rule, p]): Problem[] => {
      if (rule.cidr !== undefined) return [{ path: p, message: `${rule.cidr} may connect to port ${rule.fromPort ?? '*'}-${rule.toPort ?? '*'}; only the kennel service group may` }]
      if (rule.sourceSecurityGroup === undefined || !app.has(rule.sourceSecurityGroup)) return [{ path: p, message: `source ${rule.sourceSecurityGroup ?? '(none)'} is not a kennel service group` }]
      if (rule.protocol !== 'tcp' || rule.fromPort !== port || rule.toPort !== port) return [{ path: p, message: `opens ${rule.protocol ?? '?'}/${rule.fromPort ?? '*'}-${rule.toPort ?? '*'}; only tcp/${port} is needed` }]
      return []
    })
  })
}

/** each service's value of `name` parsed as a URL, with `{secret}` standing for the secret-store part */
function serviceUrls(d: Definition, name: string): Array<{ url: URL | undefined; raw: string | undefined; path: string }> {
  return items(d.services, 'services').map(([s, p]) => {
    const raw = envText(s.environment?.[name])
    let url: URL | undefined
    try {
      url = raw === undefined ? undefined : new URL(raw)
    } catch {
      url = undefined
    }
    return { url, raw, path: `${p}.environment.${name}` }
  })
}

const fromSecretStore = (u: URL): boolean => decodeURIComponent(u.password) === '{secret}'

export const dbNotPublic: Rule = {
  id: 'db-not-public',
  requirement: 'R7, R14',
  prevents: 'the production MongoDB had a public address on the internet',
  holds: 'the database has no public address and lives only in private subnets',
  check: (d) => {
    const db = d.database
    if (db === undefined) return [MISSING_DB]
    const flag: Problem[] = db.publiclyAccessible === false ? [] : [{ path: 'database.publiclyAccessible', message: 'must be false: a database never gets a public address' }]
    return [...flag, ...privateSubnets(d, db.subnets, 'database.subnets')]
  },
}

export const dbIngressOnlyFromApp: Rule = {
  id: 'db-ingress-only-from-app',
  requirement: 'R7',
  prevents: 'no firewall in front of the database',
  holds: 'only the kennel service group reaches the database, on tcp/5432 only',
  check: (d) => (d.database === undefined ? [MISSING_DB] : onlyFromApp(d, d.database, 'database', d.database.port ?? 5432)),
}

export const dbTlsRequired: Rule = {
  id: 'db-tls-required',
  requirement: 'R7',
  prevents: 'database traffic readable and forgeable on the network',
  holds: 'the server refuses non-TLS clients (rds.force_ssl=1) and kennel verifies the server (sslmode=verify-full)',
  check: (d) => {
    if (d.database === undefined) return [MISSING_DB]
    const server: Problem[] = d.database.parameters?.['rds.force_ssl'] === '1' ? [] : [{ path: 'database.parameters.rds.force_ssl', message: 'must be "1": the server must refuse clients without TLS' }]
    const clients = serviceUrls(d, 'KENNEL_EVENTSTORE').flatMap(({ url, raw, path }): Problem[] => {
      if (url === undefined || !/^postgres(ql)?:$/.test(url.protocol)) return [{ path, message: `must be a postgres:// URL to the database (got ${raw === undefined ? 'nothing' : 'another store'})` }]
      // require/verify-ca encrypt but accept any server with a CA-signed certificate: verify-full checks the host name too
      return url.searchParams.get('sslmode') === 'verify-full' ? [] : [{ path, message: `sslmode=${url.searchParams.get('sslmode') ?? '(unset)'}; production needs sslmode=verify-full` }]
    })
    return [...server, ...clients]
  },
}

export const dbAuthenticated: Rule = {
  id: 'db-authenticated',
  requirement: 'R7',
  prevents: 'the MongoDB required no authentication',
  holds: 'the master password is managed in the secret store and kennel logs in with a user and a password from the secret store',
  check: (d) => {
    if (d.database === undefined) return [MISSING_DB]
    const master: Problem[] = isSecretRef(d.database.masterUserSecret) ? [] : [{ path: 'database.masterUserSecret', message: 'must reference a managed secret (arn:aws:secretsmanager:…)' }]
    const clients = serviceUrls(d, 'KENNEL_EVENTSTORE').flatMap(({ url, path }): Problem[] =>
      url !== undefined && url.username !== '' && fromSecretStore(url) ? [] : [{ path, message: 'must carry a user and {secret} as the password, supplied by the secret store' }],
    )
    return [...master, ...clients]
  },
}

export const dbEncrypted: Rule = {
  id: 'db-encrypted',
  requirement: 'R12',
  prevents: 'unencrypted data within the database',
  holds: 'database storage is encrypted with a defined KMS key',
  check: (d) => {
    if (d.database === undefined) return [MISSING_DB]
    const problems: Problem[] = d.database.storageEncrypted === true ? [] : [{ path: 'database.storageEncrypted', message: 'must be true' }]
    if (byId(d.kmsKeys, 'kmsKeys', d.database.kmsKey) === undefined) problems.push({ path: 'database.kmsKey', message: `must name a key in kmsKeys (got ${d.database.kmsKey ?? 'nothing'})` })
    return problems
  },
}

export const redisTlsAuth: Rule = {
  id: 'redis-tls-auth',
  requirement: 'R7',
  prevents: 'an unauthenticated data store reachable from anywhere',
  holds: 'Redis is private, admits only kennel on tcp/6379, encrypts in transit and at rest, and needs an AUTH token from the secret store; kennel connects with rediss://',
  check: (d) => {
    const problems: Problem[] = serviceUrls(d, 'KENNEL_REDIS_URL').flatMap(({ url, raw, path }): Problem[] => {
      if (raw === undefined) return []
      if (url === undefined || url.protocol !== 'rediss:') return [{ path, message: 'must be a rediss:// (TLS) URL' }]
      return fromSecretStore(url) ? [] : [{ path, message: 'must carry {secret} as the password (the AUTH token from the secret store)' }]
    })
    const r = d.redis
    if (r === undefined) return problems
    if (r.transitEncryption !== true) problems.push({ path: 'redis.transitEncryption', message: 'must be true' })
    if (r.atRestEncryption !== true) problems.push({ path: 'redis.atRestEncryption', message: 'must be true' })
    if (!isSecretRef(r.authToken?.secret)) problems.push({ path: 'redis.authToken', message: 'must be {"secret": "<secret-store ARN>"}' })
    if (r.publiclyAccessible === true) problems.push({ path: 'redis.publiclyAccessible', message: 'must not be true' })
    return [...problems, ...privateSubnets(d, r.subnets, 'redis.subnets'), ...onlyFromApp(d, r, 'redis', r.port ?? 6379)]
  },
}
