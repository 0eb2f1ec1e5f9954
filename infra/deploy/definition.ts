import { KennelError } from '../errors.ts'

// The production deployment definition as data (R14): provider-neutral names, AWS-shaped
// semantics (security groups, NLB listeners, RDS/ElastiCache flags, S3 Block Public Access, IAM
// policy documents). Every field is optional in the types because the input is untrusted: the
// rules treat a missing control as a failed one, and a wrongly shaped list stops the check
// (fail closed) instead of being skipped.

export interface Finding { rule: string; path: string; message: string }
export type Problem = Omit<Finding, 'rule'>

export interface IngressRule { protocol?: string; fromPort?: number; toPort?: number; cidr?: string; sourceSecurityGroup?: string }
export interface SecurityGroup { id?: string; ingress?: IngressRule[] }
export interface Subnet { id?: string; cidr?: string; public?: boolean }
export interface Listener { port?: number; protocol?: string; preserveClientIp?: boolean; target?: { service?: string; port?: number } }
export interface LoadBalancer { id?: string; scheme?: string; subnets?: string[]; securityGroups?: string[]; listeners?: Listener[] }
export interface KmsKey { id?: string; arn?: string; rotation?: boolean }
/** a value delivered from a secret store: whole (`secret`) or rendered into `template` at `{secret}` */
export interface SecretRef { secret?: string; template?: string }
export type EnvValue = string | SecretRef
export interface Statement {
  Sid?: string
  Effect?: string
  Principal?: unknown
  Action?: string | string[]
  NotAction?: unknown
  Resource?: string | string[]
  NotResource?: unknown
  Condition?: Record<string, Record<string, unknown>>
}
export interface PolicyDocument { Statement?: Statement | Statement[] }
export interface DataStore {
  port?: number
  publiclyAccessible?: boolean
  subnets?: string[]
  securityGroups?: string[]
  kmsKey?: string
}
export interface Database extends DataStore {
  storageEncrypted?: boolean
  parameters?: Record<string, string>
  masterUserSecret?: string
}
export interface Redis extends DataStore { transitEncryption?: boolean; atRestEncryption?: boolean; authToken?: SecretRef }
export interface Bucket {
  name?: string
  arn?: string
  blockPublicAccess?: Record<'blockPublicAcls' | 'ignorePublicAcls' | 'blockPublicPolicy' | 'restrictPublicBuckets', boolean | undefined>
  objectOwnership?: string
  acl?: string
  versioning?: string
  website?: unknown
  encryption?: { sseAlgorithm?: string; kmsKey?: string }
  policy?: PolicyDocument
}
export interface Role { id?: string; trust?: Statement; policy?: PolicyDocument }
export interface Service {
  id?: string
  subnets?: string[]
  assignPublicIp?: boolean
  securityGroups?: string[]
  taskRole?: string
  containerPorts?: number[]
  environment?: Record<string, EnvValue>
  secretFiles?: { path?: string; secret?: string; mode?: string }[]
}
export interface Definition {
  environment?: string
  network?: { vpc?: { cidr?: string }; subnets?: Subnet[] }
  securityGroups?: SecurityGroup[]
  loadBalancers?: LoadBalancer[]
  kmsKeys?: KmsKey[]
  database?: Database
  redis?: Redis
  buckets?: Bucket[]
  iamRoles?: Role[]
  services?: Service[]
}

export function parseDefinition(text: string, source: string): Definition {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new KennelError('KENNEL_ERR_DEPLOY_DEFINITION', `${source} is not valid JSON: ${(err as Error).message}`)
  }
  if (!isObject(raw)) throw new KennelError('KENNEL_ERR_DEPLOY_DEFINITION', `${source} must hold a JSON object (the deployment definition)`)
  return raw as Definition
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function malformed(path: string, expected: string): never {
  throw new KennelError('KENNEL_ERR_DEPLOY_DEFINITION', `${path} must be ${expected}`)
}

/** a list of objects, each with its path; absent = empty, anything else stops the check */
export function items<T>(value: T[] | undefined, path: string): Array<[T, string]> {
  if (value === undefined) return []
  if (!Array.isArray(value)) malformed(path, 'a list')
  return value.map((v, i) => (isObject(v) ? [v, `${path}[${i}]`] : malformed(`${path}[${i}]`, 'an object')))
}

export function names(value: string[] | undefined, path: string): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) malformed(path, 'a list of names')
  return value
}

/** IAM's "one or many" */
export const many = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v])

export const byId = <T extends { id?: string }>(list: T[] | undefined, path: string, id: string | undefined): T | undefined =>
  items(list, path).find(([x]) => x.id === id)?.[0]

/** does an ingress rule admit TCP traffic to `port`? A rule without valid ports admits everything (fail closed). */
export function admits(rule: IngressRule, port: number): boolean {
  if (rule.protocol === '-1' || rule.protocol === 'all') return true
  if (rule.protocol !== undefined && rule.protocol !== 'tcp' && rule.protocol !== '6') return false
  const from = typeof rule.fromPort === 'number' ? rule.fromPort : 0
  const to = typeof rule.toPort === 'number' ? rule.toPort : 65535
  return from <= port && port <= to
}

const ipv4 = (a: string): number | undefined => {
  const parts = a.split('.')
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined
  return parts.reduce((n, p) => n * 256 + Number(p), 0)
}

/** true unless `cidr` lies inside the VPC's own range: any other source is the internet (IPv6 included) */
export function fromOutside(cidr: string, vpcCidr: string | undefined): boolean {
  const [net, bits] = (vpcCidr ?? '').split('/')
  const [addr, len] = cidr.split('/')
  const n = ipv4(net ?? ''), a = ipv4(addr ?? '')
  if (n === undefined || a === undefined || Number(len ?? 32) < Number(bits)) return true
  const size = 2 ** (32 - Number(bits))
  return Math.floor(a / size) !== Math.floor(n / size)
}

export const SECRET_REF = /^arn:aws:(secretsmanager|ssm):[a-z0-9-]+:\d{12}:(secret:|parameter\/)\S+$/

export const isSecretRef = (v: unknown): boolean => typeof v === 'string' && SECRET_REF.test(v)

/** the plain text of an environment value, with `{secret}` where a secret store supplies it */
export function envText(v: EnvValue | undefined): string | undefined {
  if (typeof v === 'string') return v
  if (v === undefined || !isObject(v)) return undefined
  return typeof v.template === 'string' ? v.template : '{secret}'
}

/** one control of R14: `check` lists what breaks it; no problems = the control holds */
export interface Rule {
  id: string
  /** the requirement ids it enforces */
  requirement: string
  /** the CloudPets finding it prevents */
  prevents: string
  /** what holds when the rule passes */
  holds: string
  check: (d: Definition) => Problem[]
}

/** IAM principal that means "anyone" */
export function anyone(principal: unknown): boolean {
  if (principal === '*') return true
  return typeof principal === 'object' && principal !== null && Object.values(principal).some((v) => many(v as unknown).includes('*'))
}

/** the security groups of the kennel processes: the only legitimate clients of the data tier */
export function serviceGroups(d: Definition): Set<string> {
  return new Set(items(d.services, 'services').flatMap(([s, p]) => names(s.securityGroups, `${p}.securityGroups`)))
}

/** every subnet named in `ids` exists and has no route to the internet */
export function privateSubnets(d: Definition, ids: string[] | undefined, path: string): Problem[] {
  const list = names(ids, path)
  if (list.length === 0) return [{ path, message: 'no subnets: placement (and so privacy) is undefined' }]
  return list.flatMap((id) => {
    const subnet = byId(d.network?.subnets, 'network.subnets', id)
    if (subnet === undefined) return [{ path, message: `subnet ${id} is not defined in network.subnets` }]
    return subnet.public === false ? [] : [{ path, message: `subnet ${id} is public (routes to the internet); use a private subnet` }]
  })
}
