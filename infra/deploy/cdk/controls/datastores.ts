import {
  ingressRules,
  list,
  ofType,
  props,
  render,
  secretReference,
  settingOf,
  subnetExit,
  target,
  type JsonObject,
} from '../template.ts'
import type { Control, Facts, Problem } from './facts.ts'

// R7, R12: PostgreSQL and Redis sit in isolated subnets, admit only the kennel tasks, refuse
// clients without TLS and credentials, and encrypt what they store. CloudPets' MongoDB had a
// public address, no firewall and no password.

const MISSING_DB: Problem = {
  path: 'Resources',
  message: 'no AWS::RDS::DBInstance: nothing proves the event store is private',
}

/** every subnet of a subnet group has no route out of the VPC */
function isolated(f: Facts, group: string | undefined, path: string): Problem[] {
  const subnets = list(props(group === undefined ? undefined : f.template.Resources?.[group]).SubnetIds).map(
    (s) => target(s) ?? render(s),
  )
  if (subnets.length === 0)
    return [{ path, message: 'no subnet group of this template: placement (and so privacy) is undefined' }]
  return subnets.flatMap((s) => {
    const exit = subnetExit(f.template, s)
    return exit === 'none'
      ? []
      : [
          {
            path,
            message: `subnet ${s} routes to the internet (${exit === 'internet' ? 'internet gateway' : 'NAT'}); data stores belong in isolated subnets`,
          },
        ]
  })
}

/** every ingress rule of the store's groups is exactly tcp/port from a kennel service group */
function onlyFromKennel(f: Facts, groups: string[], port: number, path: string): Problem[] {
  if (groups.length === 0) return [{ path, message: 'no security group: who may connect is undefined' }]
  return ingressRules(f.template)
    .filter((r) => groups.includes(r.group))
    .flatMap((r): Problem[] => {
      if (r.cidr !== undefined)
        return [
          {
            path: r.path,
            message: `${r.cidr} may connect to ${r.protocol}/${r.from}-${r.to}; only the kennel tasks' group may`,
          },
        ]
      if (r.sourceGroup === undefined || !f.kennelGroups.has(r.sourceGroup))
        return [{ path: r.path, message: `source ${r.sourceGroup ?? '(none)'} is not a kennel service group` }]
      if (r.protocol !== 'tcp' || r.from !== port || r.to !== port)
        return [{ path: r.path, message: `opens ${r.protocol}/${r.from}-${r.to}; only tcp/${port} is needed` }]
      return []
    })
}

const groupsOf = (p: JsonObject, key: string): string[] => list(p[key]).map((g) => target(g) ?? render(g))
const portOf = (p: JsonObject, dflt: number): number => (p.Port === undefined ? dflt : Number(render(p.Port)))

/** a kennel connection URL's password must be a container secret (`$NAME` filled in by ECS) */
function passwordFromSecret(f: Facts, setting: string, scheme: RegExp): Problem[] {
  return f.kennel.flatMap((c): Problem[] => {
    const raw = settingOf(c, setting)
    const path = `${c.path}.${setting}`
    if (raw === undefined) return [{ path, message: 'not set: kennel would not use this store' }]
    const m = /^([a-z]+):\/\/([^:@/]*):([^@/]*)@/.exec(raw)
    if (m === null || !scheme.test(m[1]!))
      return [{ path, message: `must be ${scheme.source}://user:password@… (got ${raw.replace(/:[^:@/]*@/, ':…@')})` }]
    const variable = /^\$(\w+)$/.exec(m[3]!)?.[1]
    if (variable === undefined || c.secrets[variable] === undefined)
      return [{ path, message: 'the password must be $NAME of a container secret (from Secrets Manager)' }]
    return []
  })
}

export const dbNotPublic: Control = {
  id: 'db-not-public',
  requirement: 'R7, R14',
  holds: 'PostgreSQL has no public address and lives only in isolated subnets',
  check: (f) => {
    const dbs = ofType(f.template, 'AWS::RDS::DBInstance')
    if (dbs.length === 0) return [MISSING_DB]
    return dbs.flatMap(([id, p]) => [
      ...(p.PubliclyAccessible === false
        ? []
        : [{ path: `${id}.PubliclyAccessible`, message: 'must be false: a database never gets a public address' }]),
      ...isolated(f, target(p.DBSubnetGroupName), `${id}.DBSubnetGroupName`),
    ])
  },
}

export const dbIngressOnlyFromKennel: Control = {
  id: 'db-ingress-only-from-kennel',
  requirement: 'R7',
  holds: "only the kennel tasks' security group reaches PostgreSQL, on tcp/5432 only",
  check: (f) => {
    const dbs = ofType(f.template, 'AWS::RDS::DBInstance')
    if (dbs.length === 0) return [MISSING_DB]
    return dbs.flatMap(([id, p]) =>
      onlyFromKennel(f, groupsOf(p, 'VPCSecurityGroups'), portOf(p, 5432), `${id}.VPCSecurityGroups`),
    )
  },
}

export const dbTlsRequired: Control = {
  id: 'db-tls-required',
  requirement: 'R7',
  holds:
    'the server refuses clients without TLS (rds.force_ssl=1) and kennel verifies the server (sslmode=verify-full)',
  check: (f) => {
    const dbs = ofType(f.template, 'AWS::RDS::DBInstance')
    if (dbs.length === 0) return [MISSING_DB]
    const server = dbs.flatMap(([id, p]): Problem[] => {
      const group = target(p.DBParameterGroupName)
      const force = props(group === undefined ? undefined : f.template.Resources?.[group]).Parameters
      const value = force === undefined ? undefined : render((force as JsonObject)['rds.force_ssl'])
      return value === '1'
        ? []
        : [
            {
              path: `${id}.DBParameterGroupName`,
              message: `rds.force_ssl is ${value ?? '(unset)'}; must be 1 so the server refuses clients without TLS`,
            },
          ]
    })
    const clients = f.kennel.flatMap((c): Problem[] => {
      const url = settingOf(c, 'KENNEL_EVENTSTORE') ?? ''
      const mode = /[?&]sslmode=([^&]*)/.exec(url)?.[1]
      // require/verify-ca accept any server with a CA-signed certificate; verify-full checks the host name too
      return mode === 'verify-full'
        ? []
        : [
            {
              path: `${c.path}.KENNEL_EVENTSTORE`,
              message: `sslmode=${mode ?? '(unset)'}; production needs sslmode=verify-full`,
            },
          ]
    })
    return [...server, ...clients]
  },
}

export const dbCredentialsManaged: Control = {
  id: 'db-credentials-managed',
  requirement: 'R7, R8',
  holds: 'the database password is generated into Secrets Manager and kennel logs in with it from a container secret',
  check: (f) => {
    const dbs = ofType(f.template, 'AWS::RDS::DBInstance')
    if (dbs.length === 0) return [MISSING_DB]
    const server = dbs.flatMap(([id, p]): Problem[] =>
      p.ManageMasterUserPassword === true || secretReference(p.MasterUserPassword)
        ? []
        : [
            {
              path: `${id}.MasterUserPassword`,
              message:
                'must be a {{resolve:secretsmanager:…}} reference (or ManageMasterUserPassword), never a value in the template',
            },
          ],
    )
    return [...server, ...passwordFromSecret(f, 'KENNEL_EVENTSTORE', /postgres(ql)?/)]
  },
}

export const dbEncrypted: Control = {
  id: 'db-encrypted',
  requirement: 'R12',
  holds: 'PostgreSQL storage is encrypted with a customer KMS key that rotates',
  check: (f) => {
    const dbs = ofType(f.template, 'AWS::RDS::DBInstance')
    if (dbs.length === 0) return [MISSING_DB]
    return dbs.flatMap(([id, p]): Problem[] => {
      const key = target(p.KmsKeyId)
      const problems: Problem[] =
        p.StorageEncrypted === true ? [] : [{ path: `${id}.StorageEncrypted`, message: 'must be true' }]
      if (key === undefined || f.template.Resources?.[key]?.Type !== 'AWS::KMS::Key')
        problems.push({ path: `${id}.KmsKeyId`, message: 'must be a customer KMS key of this template' })
      else if (props(f.template.Resources[key]).EnableKeyRotation !== true)
        problems.push({ path: `${key}.EnableKeyRotation`, message: 'must be true' })
      return problems
    })
  },
}

export const redisTlsAuth: Control = {
  id: 'redis-tls-auth',
  requirement: 'R7, R12',
  holds:
    'Redis lives in isolated subnets, admits only kennel on tcp/6379, requires TLS, encrypts at rest and needs an AUTH token from Secrets Manager; kennel connects with rediss://',
  check: (f) => {
    const groups = ofType(f.template, 'AWS::ElastiCache::ReplicationGroup')
    const clients =
      f.kennel.some((c) => settingOf(c, 'KENNEL_REDIS_URL') !== undefined) || groups.length > 0
        ? passwordFromSecret(f, 'KENNEL_REDIS_URL', /rediss/)
        : []
    return [
      ...clients,
      ...ofType(f.template, 'AWS::ElastiCache::CacheCluster').map(([id]) => ({
        path: id,
        message:
          'a cache cluster without a replication group cannot require TLS and AUTH; use AWS::ElastiCache::ReplicationGroup',
      })),
      ...groups.flatMap(([id, p]): Problem[] => [
        ...(p.TransitEncryptionEnabled === true
          ? []
          : [{ path: `${id}.TransitEncryptionEnabled`, message: 'must be true' }]),
        ...(p.TransitEncryptionMode === undefined || p.TransitEncryptionMode === 'required'
          ? []
          : [
              {
                path: `${id}.TransitEncryptionMode`,
                message: `${render(p.TransitEncryptionMode)} still accepts plaintext clients; must be required`,
              },
            ]),
        ...(p.AtRestEncryptionEnabled === true
          ? []
          : [{ path: `${id}.AtRestEncryptionEnabled`, message: 'must be true' }]),
        ...(secretReference(p.AuthToken)
          ? []
          : [
              {
                path: `${id}.AuthToken`,
                message:
                  'must be a {{resolve:secretsmanager:…}} reference: Redis needs an AUTH token kept out of the template',
              },
            ]),
        ...isolated(f, target(p.CacheSubnetGroupName), `${id}.CacheSubnetGroupName`),
        ...onlyFromKennel(f, groupsOf(p, 'SecurityGroupIds'), portOf(p, 6379), `${id}.SecurityGroupIds`),
      ]),
    ]
  },
}
