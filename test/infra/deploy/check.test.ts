import fs from 'node:fs'
import t from 'tap'
import { newObjectKey } from '../../../infra/blobstore/port.ts'
import { checkDefinition, rules } from '../../../infra/deploy/check.ts'
import { parseDefinition, type Definition, type IngressRule, type Role, type Service, type Statement } from '../../../infra/deploy/definition.ts'
import { OBJECT_KEY_PREFIX } from '../../../infra/deploy/rules/presigner.ts'

const FILE = 'infra/deploy/production.json'
const shipped = parseDefinition(fs.readFileSync(FILE, 'utf8'), FILE)
const ARN = 'arn:aws:s3:::kennel-production-recordings'

// accessors into a copy of the shipped definition, for the attacks below
const group = (d: Definition, id: string) => d.securityGroups!.find((g) => g.id === id)!
const open = (d: Definition, id: string, rule: IngressRule) => group(d, id).ingress!.push(rule)
const kennel = (d: Definition): Service => d.services![0]!
const env = (d: Definition) => kennel(d).environment!
const role = (d: Definition, id: string): Role => d.iamRoles!.find((r) => r.id === id)!
const statements = (d: Definition, id: string) => role(d, id).policy!.Statement as Statement[]
const bucket = (d: Definition) => d.buckets![0]!
const listener = (d: Definition) => d.loadBalancers![0]!.listeners!
const internet = (port: number, toPort = port): IngressRule => ({ protocol: 'tcp', fromPort: port, toPort, cidr: '0.0.0.0/0' })
const eventStore = (d: Definition, url: string) => (env(d).KENNEL_EVENTSTORE = { ...(env(d).KENNEL_EVENTSTORE as object), template: url })

t.test('the shipped production definition holds every control', async (t) => {
  t.same(checkDefinition(shipped), [])
  t.equal(new Set(rules.map((r) => r.id)).size, rules.length, 'rule ids are unique')
  for (const r of rules) t.match(r.requirement, /^R\d+(, R\d+)*$/, `${r.id} cites its requirement`)
})

t.test('the presigner scope matches the object keys kennel writes', async (t) => {
  t.ok(newObjectKey().startsWith(OBJECT_KEY_PREFIX))
})

// each attack breaks exactly one control of the shipped definition; its rule must report it
const attacks: Array<[rule: string, attack: string, mutate: (d: Definition) => void]> = [
  ['db-not-public', 'the database gets a public address', (d) => void (d.database!.publiclyAccessible = true)],
  ['db-not-public', 'the database lands in a public subnet', (d) => void d.database!.subnets!.push('edge-a')],
  ['db-ingress-only-from-app', '0.0.0.0/0 may reach 5432', (d) => open(d, 'sg-db', internet(5432))],
  ['db-ingress-only-from-app', 'an office address may reach 5432', (d) => open(d, 'sg-db', { ...internet(5432), cidr: '203.0.113.7/32' })],
  ['db-ingress-only-from-app', 'the load balancer group may reach 5432', (d) => open(d, 'sg-db', { protocol: 'tcp', fromPort: 5432, toPort: 5432, sourceSecurityGroup: 'sg-edge' })],
  ['db-ingress-only-from-app', 'the app group may reach every port', (d) => open(d, 'sg-db', { protocol: '-1', sourceSecurityGroup: 'sg-app' })],
  ['db-tls-required', 'the server accepts plaintext', (d) => void (d.database!.parameters!['rds.force_ssl'] = '0')],
  ['db-tls-required', 'kennel does not verify the server name', (d) => eventStore(d, 'postgres://kennel_app:{secret}@db.internal:5432/kennel?sslmode=require')],
  ['db-authenticated', 'the master password is not managed', (d) => void delete d.database!.masterUserSecret],
  ['db-authenticated', 'kennel connects without a password', (d) => eventStore(d, 'postgres://kennel_app@db.internal:5432/kennel?sslmode=verify-full')],
  ['db-encrypted', 'storage is not encrypted', (d) => void (d.database!.storageEncrypted = false)],
  ['redis-tls-auth', 'redis without transit encryption', (d) => void (d.redis!.transitEncryption = false)],
  ['redis-tls-auth', 'kennel connects with redis://', (d) => void (env(d).KENNEL_REDIS_URL = { ...(env(d).KENNEL_REDIS_URL as object), template: 'redis://:{secret}@cache.internal:6379' })],
  ['redis-tls-auth', 'redis without an AUTH token', (d) => void delete d.redis!.authToken],
  ['redis-tls-auth', 'redis open to the internet', (d) => open(d, 'sg-redis', internet(6379))],
  ['bucket-block-public-access', 'BlockPublicAcls off', (d) => void (bucket(d).blockPublicAccess!.blockPublicAcls = false)],
  ['bucket-block-public-access', 'IgnorePublicAcls off', (d) => void (bucket(d).blockPublicAccess!.ignorePublicAcls = false)],
  ['bucket-block-public-access', 'BlockPublicPolicy off', (d) => void (bucket(d).blockPublicAccess!.blockPublicPolicy = false)],
  ['bucket-block-public-access', 'RestrictPublicBuckets missing', (d) => void delete bucket(d).blockPublicAccess!.restrictPublicBuckets],
  ['bucket-no-public-acl-or-policy', 'a policy grants Principal "*" GetObject', (d) => void (bucket(d).policy!.Statement as Statement[]).push({ Effect: 'Allow', Principal: '*', Action: 's3:GetObject', Resource: `${ARN}/*` })],
  ['bucket-no-public-acl-or-policy', 'a policy grants {"AWS": "*"} everything', (d) => void (bucket(d).policy!.Statement as Statement[]).push({ Effect: 'Allow', Principal: { AWS: ['*'] }, Action: 's3:*', Resource: `${ARN}/*` })],
  ['bucket-no-public-acl-or-policy', 'a public-read ACL', (d) => void (bucket(d).acl = 'public-read')],
  ['bucket-no-public-acl-or-policy', 'ACLs re-enabled', (d) => void (bucket(d).objectOwnership = 'ObjectWriter')],
  ['bucket-no-public-acl-or-policy', 'website hosting', (d) => void (bucket(d).website = { indexDocument: 'index.html' })],
  ['bucket-tls-only-policy', 'no SecureTransport deny', (d) => void (bucket(d).policy!.Statement = [])],
  ['bucket-tls-only-policy', 'the deny misses the objects', (d) => void ((bucket(d).policy!.Statement as Statement[])[0]!.Resource = [ARN])],
  ['bucket-tls-only-policy', 'the deny is conditioned the wrong way', (d) => void ((bucket(d).policy!.Statement as Statement[])[0]!.Condition = { Bool: { 'aws:SecureTransport': 'true' } })],
  ['bucket-sse-kms', 'default encryption SSE-S3', (d) => void (bucket(d).encryption!.sseAlgorithm = 'AES256')],
  ['bucket-sse-kms', 'the key does not rotate', (d) => void (d.kmsKeys![0]!.rotation = false)],
  ['bucket-sse-kms', 'kennel presigns without the key', (d) => void delete env(d).KENNEL_S3_KMS_KEY_ID],
  ['bucket-sse-kms', 'kennel writes to an undefined bucket', (d) => void (env(d).KENNEL_S3_BUCKET = 'kennel-dev-recordings')],
  ['bucket-versioning', 'versioning suspended', (d) => void (bucket(d).versioning = 'Suspended')],
  ['presigner-least-privilege', 'the presigner gets s3:*', (d) => void (statements(d, 'role-kennel-task')[0]!.Action = ['s3:*'])],
  ['presigner-least-privilege', 'the presigner gets Resource "*"', (d) => void (statements(d, 'role-kennel-task')[0]!.Resource = '*')],
  ['presigner-least-privilege', 'the presigner may list the bucket', (d) => void statements(d, 'role-kennel-task').push({ Effect: 'Allow', Action: 's3:ListBucket', Resource: ARN })],
  ['presigner-least-privilege', 'the presigner may use every key', (d) => void (statements(d, 'role-kennel-task')[1]!.Resource = 'arn:aws:kms:eu-west-1:111122223333:key/*')],
  ['presigner-least-privilege', 'the presigner may manage IAM', (d) => void statements(d, 'role-kennel-task').push({ Effect: 'Allow', Action: 'iam:PassRole', Resource: '*' })],
  ['presigner-least-privilege', 'NotAction instead of actions', (d) => void statements(d, 'role-kennel-task').push({ Effect: 'Allow', NotAction: 'iam:*', Resource: `${ARN}/rec-*` })],
  ['presigner-least-privilege', 'anyone may assume the role', (d) => void (role(d, 'role-kennel-task').trust!.Principal = { AWS: '*' })],
  ['presigner-least-privilege', 'another role reads recordings', (d) => void statements(d, 'role-kennel-execution').push({ Effect: 'Allow', Action: 's3:GetObject', Resource: `${ARN}/*` })],
  ['presigner-least-privilege', 'the presigner cannot upload', (d) => void (statements(d, 'role-kennel-task')[0]!.Action = ['s3:GetObject'])],
  ['edge-tls-passthrough', 'the internet reaches kennel directly', (d) => open(d, 'sg-app', internet(8443))],
  ['edge-tls-passthrough', 'the load balancer admits SSH', (d) => open(d, 'sg-edge', internet(22))],
  ['edge-tls-passthrough', 'the load balancer terminates TLS (the client certificate is lost)', (d) => void (listener(d)[0]!.protocol = 'TLS')],
  ['edge-tls-passthrough', 'the load balancer hides the client address', (d) => void (listener(d)[1]!.preserveClientIp = false)],
  ['edge-tls-passthrough', 'kennel gets a public IP', (d) => void (kennel(d).assignPublicIp = true)],
  ['edge-tls-passthrough', 'kennel runs in a public subnet', (d) => void kennel(d).subnets!.push('edge-b')],
  ['no-plaintext-mqtt', '1883 open to the internet', (d) => open(d, 'sg-edge', internet(1883))],
  ['no-plaintext-mqtt', '1883 inside a port range', (d) => open(d, 'sg-app', { protocol: 'tcp', fromPort: 1024, toPort: 2048, sourceSecurityGroup: 'sg-edge' })],
  ['no-plaintext-mqtt', 'a 1883 listener', (d) => void listener(d).push({ port: 1883, protocol: 'TCP', preserveClientIp: true, target: { service: 'kennel', port: 1883 } })],
  ['no-plaintext-mqtt', 'KENNEL_MQTT_PORT=1883', (d) => void (env(d).KENNEL_MQTT_PORT = '1883')],
  ['metrics-not-public', '9464 open to the internet', (d) => open(d, 'sg-app', internet(9464))],
  ['metrics-not-public', 'every port open to the internet', (d) => open(d, 'sg-edge', { protocol: '-1', cidr: '::/0' })],
  ['metrics-not-public', 'a metrics listener', (d) => void listener(d).push({ port: 8443, protocol: 'TCP', preserveClientIp: true, target: { service: 'kennel', port: 9464 } })],
  ['metrics-not-public', 'the metrics port exposed', (d) => void kennel(d).containerPorts!.push(9464)],
  ['env-production', 'KENNEL_ENV=development', (d) => void (env(d).KENNEL_ENV = 'development')],
  ['env-production', 'the definition is not production', (d) => void (d.environment = 'staging')],
  ['env-production', 'no TLS certificate (kennel would refuse to start)', (d) => void delete env(d).KENNEL_TLS_CERT],
  ['env-production', 'the default security contact', (d) => void delete env(d).KENNEL_SECURITY_CONTACT],
  ['no-inline-secrets', 'the master key inline', (d) => void (env(d).KENNEL_MASTER_KEY = Buffer.alloc(32, 1).toString('base64'))],
  ['no-inline-secrets', 'a database master password inline', (d) => void Object.assign(d.database!, { masterUserPassword: 'hunter2hunter2' })],
  ['no-inline-secrets', 'a password inside the event store URL', (d) => void (env(d).KENNEL_EVENTSTORE = 'postgres://kennel_app:hunter2@db.internal:5432/kennel?sslmode=verify-full')],
  ['no-inline-secrets', 'a private key inline', (d) => void (env(d).KENNEL_TLS_KEY = '-----BEGIN PRIVATE KEY-----\nMIG…\n-----END PRIVATE KEY-----')],
  ['no-inline-secrets', 'a key file readable by others', (d) => void (kennel(d).secretFiles![1]!.mode = '0644')],
  ['no-inline-secrets', 'a redis token inline', (d) => void (d.redis!.authToken = { secret: 'correct horse battery staple' })],
]

for (const [rule, attack, mutate] of attacks) {
  t.test(`${rule} catches: ${attack}`, async (t) => {
    const d = structuredClone(shipped)
    mutate(d)
    const findings = checkDefinition(d)
    t.ok(findings.some((f) => f.rule === rule), `${rule} reports it: ${JSON.stringify(findings)}`)
    for (const f of findings) t.ok(f.path.length > 0 && f.message.length > 0, 'each finding names where and why')
  })
}

t.test('every rule is exercised by at least one attack', async (t) => {
  t.same(rules.map((r) => r.id).filter((id) => !attacks.some(([rule]) => rule === id)), [])
})

t.test('an empty definition fails every data-store and environment control instead of passing vacuously', async (t) => {
  const failed = new Set(checkDefinition({}).map((f) => f.rule))
  for (const id of ['db-not-public', 'db-ingress-only-from-app', 'db-tls-required', 'db-authenticated', 'db-encrypted', 'env-production']) t.ok(failed.has(id), id)
})

t.test('malformed definitions stop the check with KENNEL_ERR_DEPLOY_DEFINITION', async (t) => {
  for (const text of ['{"services": [', '[]', 'null', '"production"']) {
    t.throws(() => parseDefinition(text, 'x.json'), { code: 'KENNEL_ERR_DEPLOY_DEFINITION' }, text)
  }
  const notAList = { ...structuredClone(shipped), securityGroups: 'sg-db' } as unknown as Definition
  t.throws(() => checkDefinition(notAList), /securityGroups must be a list/)
  const badRule = structuredClone(shipped)
  ;(group(badRule, 'sg-db').ingress as unknown[]).push('0.0.0.0/0')
  t.throws(() => checkDefinition(badRule), /securityGroups\[sg-db\]\.ingress\[1\] must be an object/)
})
