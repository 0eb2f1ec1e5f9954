import type { Test } from 'tap'
import { checkTemplate, controls } from '../../../../infra/deploy/cdk/controls.ts'
import type { CfnTemplate } from '../../../../infra/deploy/cdk/template.ts'
import { idOf, type Synthesized } from './synthesized.ts'

// Attacks on the synthesized template: each weakens one control the way a careless edit of the
// stack would, and the control must report it. `checkTemplate` is what `kennel deploy check`
// runs, so these prove the command fails when a control is removed.

/** a template being edited: arbitrary CloudFormation JSON, so its shape is not typed */
// biome-ignore lint/suspicious/noExplicitAny: arbitrary CloudFormation JSON
type Edit = Record<string, any>

interface Ids {
  bucket: string
  logs: string
  recordingsKey: string
  db: string
  dbSg: string
  paramGroup: string
  redis: string
  redisSg: string
  edge: string
  kennelSg: string
  lb: string
  taskRole: string
  taskPolicy: string
  executionPolicy: string
  bucketPolicy: string
  logsPolicy: string
  listeners: string[]
  targetGroups: string[]
  tasks: string[]
  services: string[]
  publicSubnet: string
}

function ids(s: Synthesized): Ids {
  const r = s.json.Resources as Edit
  const ofType = (type: string) => Object.keys(r).filter((k) => r[k].Type === type)
  const db = idOf(s.stack, s.stack.database)
  const policyOf = (role: string) => ofType('AWS::IAM::Policy').find((p) => r[p].Properties.Roles[0].Ref === role)!
  const bucketPolicyOf = (b: string) => ofType('AWS::S3::BucketPolicy').find((p) => r[p].Properties.Bucket.Ref === b)!
  const bucket = idOf(s.stack, s.stack.recordings)
  const logs = idOf(s.stack, s.stack.accessLogs)
  const redis = s.stack.getLogicalId(s.stack.redis)
  return {
    bucket,
    logs,
    recordingsKey: idOf(s.stack, s.stack.recordingsKey),
    db,
    dbSg: r[db].Properties.VPCSecurityGroups[0]['Fn::GetAtt'][0],
    paramGroup: r[db].Properties.DBParameterGroupName.Ref,
    redis,
    redisSg: r[redis].Properties.SecurityGroupIds[0]['Fn::GetAtt'][0],
    edge: idOf(s.stack, s.stack.edge),
    kennelSg: ofType('AWS::EC2::SecurityGroup').find((g) =>
      r[g].Properties.GroupDescription.startsWith('kennel tasks'),
    )!,
    lb: idOf(s.stack, s.stack.loadBalancer),
    taskRole: idOf(s.stack, s.stack.taskRole),
    taskPolicy: policyOf(idOf(s.stack, s.stack.taskRole)),
    executionPolicy: policyOf(idOf(s.stack, s.stack.executionRole)),
    bucketPolicy: bucketPolicyOf(bucket),
    logsPolicy: bucketPolicyOf(logs),
    listeners: ofType('AWS::ElasticLoadBalancingV2::Listener'),
    targetGroups: ofType('AWS::ElasticLoadBalancingV2::TargetGroup'),
    tasks: ofType('AWS::ECS::TaskDefinition'),
    services: ofType('AWS::ECS::Service'),
    publicSubnet: ofType('AWS::EC2::Subnet').find((n) => r[n].Properties.MapPublicIpOnLaunch === true)!,
  }
}

const arn = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] })
const groupId = (id: string) => ({ 'Fn::GetAtt': [id, 'GroupId'] })
const internet = (port: number, toPort = port) => ({
  CidrIp: '0.0.0.0/0',
  IpProtocol: 'tcp',
  FromPort: port,
  ToPort: toPort,
})

type Attack = [control: string, attack: string, mutate: (r: Edit, i: Ids) => void]

// helpers over a template's Resources
const p = (r: Edit, id: string): Edit => r[id].Properties
const addIngress = (r: Edit, group: string, rule: Edit) => (p(r, group).SecurityGroupIngress ??= []).push(rule)
const container = (r: Edit, i: Ids): Edit => p(r, i.tasks[0]!).ContainerDefinitions[0]
const env = (r: Edit, i: Ids, name: string): Edit => container(r, i).Environment.find((e: Edit) => e.Name === name)
const setEnv = (r: Edit, i: Ids, name: string, value: unknown) => {
  const found = env(r, i, name)
  if (found) found.Value = value
  else container(r, i).Environment.push({ Name: name, Value: value })
}
const dropEnv = (r: Edit, i: Ids, name: string) =>
  (container(r, i).Environment = container(r, i).Environment.filter((e: Edit) => e.Name !== name))
const dropSecret = (r: Edit, i: Ids, name: string) =>
  (container(r, i).Secrets = container(r, i).Secrets.filter((x: Edit) => x.Name !== name))
const editScript = (r: Edit, i: Ids, edit: (script: string) => string) => {
  const c = container(r, i)
  c.Command = [edit(c.Command[0])]
}
const taskStatements = (r: Edit, i: Ids): Edit[] => p(r, i.taskPolicy).PolicyDocument.Statement
const lifecycle = (r: Edit, i: Ids): Edit[] => p(r, i.bucket).LifecycleConfiguration.Rules
const bpa = (r: Edit, id: string): Edit => p(r, id).PublicAccessBlockConfiguration

export const attacks: Attack[] = [
  ['db-not-public', 'the database gets a public address', (r, i) => void (p(r, i.db).PubliclyAccessible = true)],
  [
    'db-not-public',
    'the database subnet group takes a public subnet',
    (r, i) => void p(r, p(r, i.db).DBSubnetGroupName.Ref).SubnetIds.push({ Ref: i.publicSubnet }),
  ],
  ['db-ingress-only-from-kennel', '0.0.0.0/0 may reach 5432', (r, i) => addIngress(r, i.dbSg, internet(5432))],
  [
    'db-ingress-only-from-kennel',
    'the NLB group may reach 5432',
    (r, i) =>
      addIngress(r, i.dbSg, {
        IpProtocol: 'tcp',
        FromPort: 5432,
        ToPort: 5432,
        SourceSecurityGroupId: groupId(i.edge),
      }),
  ],
  [
    'db-ingress-only-from-kennel',
    'kennel may reach every port of the database',
    (r, i) => addIngress(r, i.dbSg, { IpProtocol: '-1', SourceSecurityGroupId: groupId(i.kennelSg) }),
  ],
  [
    'db-tls-required',
    'the server accepts plaintext (rds.force_ssl=0)',
    (r, i) => void (p(r, i.paramGroup).Parameters['rds.force_ssl'] = '0'),
  ],
  [
    'db-tls-required',
    'the default parameter group (force_ssl unset)',
    (r, i) => void delete p(r, i.db).DBParameterGroupName,
  ],
  [
    'db-tls-required',
    'kennel does not verify the server name (sslmode=require)',
    (r, i) => editScript(r, i, (s) => s.replace('sslmode=verify-full', 'sslmode=require')),
  ],
  [
    'db-credentials-managed',
    'the master password written into the template',
    (r, i) => void (p(r, i.db).MasterUserPassword = 'hunter2hunter2'),
  ],
  [
    'db-credentials-managed',
    'kennel connects with a password written into its command',
    (r, i) => editScript(r, i, (s) => s.replace('$DB_PASSWORD', 'hunter2')),
  ],
  ['db-encrypted', 'storage not encrypted', (r, i) => void (p(r, i.db).StorageEncrypted = false)],
  ['db-encrypted', 'storage encrypted with the AWS-managed key', (r, i) => void delete p(r, i.db).KmsKeyId],
  [
    'db-encrypted',
    'the database key does not rotate',
    (r, i) => void (p(r, p(r, i.db).KmsKeyId['Fn::GetAtt'][0]).EnableKeyRotation = false),
  ],
  [
    'redis-tls-auth',
    'Redis without transit encryption',
    (r, i) => void (p(r, i.redis).TransitEncryptionEnabled = false),
  ],
  [
    'redis-tls-auth',
    'Redis still accepting plaintext (preferred)',
    (r, i) => void (p(r, i.redis).TransitEncryptionMode = 'preferred'),
  ],
  ['redis-tls-auth', 'Redis without an AUTH token', (r, i) => void delete p(r, i.redis).AuthToken],
  ['redis-tls-auth', 'Redis not encrypted at rest', (r, i) => void (p(r, i.redis).AtRestEncryptionEnabled = false)],
  [
    'redis-tls-auth',
    'kennel connects with redis://',
    (r, i) => editScript(r, i, (s) => s.replace('rediss://', 'redis://')),
  ],
  ['redis-tls-auth', 'Redis open to the internet', (r, i) => addIngress(r, i.redisSg, internet(6379))],
  ['bucket-block-public-access', 'BlockPublicAcls off', (r, i) => void (bpa(r, i.bucket).BlockPublicAcls = false)],
  ['bucket-block-public-access', 'IgnorePublicAcls off', (r, i) => void (bpa(r, i.bucket).IgnorePublicAcls = false)],
  ['bucket-block-public-access', 'BlockPublicPolicy off', (r, i) => void (bpa(r, i.bucket).BlockPublicPolicy = false)],
  [
    'bucket-block-public-access',
    'RestrictPublicBuckets missing',
    (r, i) => void delete bpa(r, i.bucket).RestrictPublicBuckets,
  ],
  [
    'bucket-block-public-access',
    'the log bucket without Block Public Access',
    (r, i) => void delete p(r, i.logs).PublicAccessBlockConfiguration,
  ],
  [
    'bucket-no-public-grant',
    'a policy lets anyone GetObject',
    (r, i) =>
      void p(r, i.bucketPolicy).PolicyDocument.Statement.push({
        Effect: 'Allow',
        Principal: '*',
        Action: 's3:GetObject',
        Resource: { 'Fn::Join': ['', [arn(i.bucket), '/*']] },
      }),
  ],
  [
    'bucket-no-public-grant',
    'a policy lets {"AWS": "*"} read the access logs',
    (r, i) =>
      void p(r, i.logsPolicy).PolicyDocument.Statement.push({
        Effect: 'Allow',
        Principal: { AWS: '*' },
        Action: 's3:GetObject',
        Resource: '*',
      }),
  ],
  [
    'bucket-no-public-grant',
    'the recordings policy allows another account',
    (r, i) =>
      void p(r, i.bucketPolicy).PolicyDocument.Statement.push({
        Effect: 'Allow',
        Principal: { AWS: 'arn:aws:iam::210987654321:root' },
        Action: 's3:GetObject',
        Resource: '*',
      }),
  ],
  [
    'bucket-no-public-grant',
    'ACLs re-enabled',
    (r, i) => void (p(r, i.bucket).OwnershipControls = { Rules: [{ ObjectOwnership: 'ObjectWriter' }] }),
  ],
  ['bucket-no-public-grant', 'a public-read canned ACL', (r, i) => void (p(r, i.bucket).AccessControl = 'PublicRead')],
  [
    'bucket-no-public-grant',
    'website hosting',
    (r, i) => void (p(r, i.bucket).WebsiteConfiguration = { IndexDocument: 'index.html' }),
  ],
  [
    'bucket-tls-only',
    'no TLS-only statement on the recordings bucket',
    (r, i) => void (p(r, i.bucketPolicy).PolicyDocument.Statement = []),
  ],
  ['bucket-tls-only', 'no bucket policy on the log bucket', (r, i) => void delete r[i.logsPolicy]],
  [
    'bucket-tls-only',
    'the deny covers the bucket but not its objects',
    (r, i) => void (p(r, i.bucketPolicy).PolicyDocument.Statement[0].Resource = [arn(i.bucket)]),
  ],
  [
    'bucket-tls-only',
    'the deny is conditioned the wrong way',
    (r, i) =>
      void (p(r, i.bucketPolicy).PolicyDocument.Statement[0].Condition = { Bool: { 'aws:SecureTransport': 'true' } }),
  ],
  [
    'bucket-sse-kms',
    'default encryption SSE-S3',
    (r, i) =>
      void (p(r, i.bucket).BucketEncryption.ServerSideEncryptionConfiguration = [
        { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
      ]),
  ],
  [
    'bucket-sse-kms',
    'the recordings key does not rotate',
    (r, i) => void (p(r, i.recordingsKey).EnableKeyRotation = false),
  ],
  ['bucket-sse-kms', 'kennel presigns without the key', (r, i) => dropEnv(r, i, 'KENNEL_S3_KMS_KEY_ID')],
  [
    'bucket-sse-kms',
    'kennel presigns with another key',
    (r, i) => setEnv(r, i, 'KENNEL_S3_KMS_KEY_ID', 'arn:aws:kms:eu-west-1:123456789012:key/other'),
  ],
  [
    'bucket-versioning',
    'versioning suspended',
    (r, i) => void (p(r, i.bucket).VersioningConfiguration = { Status: 'Suspended' }),
  ],
  ['bucket-access-logging', 'no server access logging', (r, i) => void delete p(r, i.bucket).LoggingConfiguration],
  [
    'bucket-access-logging',
    'the bucket logs into itself',
    (r, i) => void (p(r, i.bucket).LoggingConfiguration.DestinationBucketName = { Ref: i.bucket }),
  ],
  [
    'recordings-retention',
    'the bucket keeps recordings longer than kennel is configured to',
    (r, i) => void (lifecycle(r, i)[0]!.ExpirationInDays = 3650),
  ],
  [
    'recordings-retention',
    'kennel configured shorter than the bucket rule',
    (r, i) => setEnv(r, i, 'KENNEL_RETENTION_RECORDINGS_DAYS', '30'),
  ],
  [
    'recordings-retention',
    'no retention in the kennel environment',
    (r, i) => dropEnv(r, i, 'KENNEL_RETENTION_RECORDINGS_DAYS'),
  ],
  ['recordings-retention', 'the rule only covers a prefix', (r, i) => void (lifecycle(r, i)[0]!.Prefix = 'old/')],
  [
    'recordings-retention',
    'noncurrent versions kept for ever',
    (r, i) => void delete lifecycle(r, i)[0]!.NoncurrentVersionExpiration,
  ],
  ['task-role-least-privilege', 'the task role gets s3:*', (r, i) => void (taskStatements(r, i)[0]!.Action = 's3:*')],
  [
    'task-role-least-privilege',
    'the task role reaches the whole bucket',
    (r, i) => void (taskStatements(r, i)[0]!.Resource = { 'Fn::Join': ['', [arn(i.bucket), '/*']] }),
  ],
  [
    'task-role-least-privilege',
    'the task role reaches every bucket',
    (r, i) => void (taskStatements(r, i)[0]!.Resource = '*'),
  ],
  [
    'task-role-least-privilege',
    'the task role may list the bucket',
    (r, i) => void taskStatements(r, i).push({ Effect: 'Allow', Action: 's3:ListBucket', Resource: arn(i.bucket) }),
  ],
  [
    'task-role-least-privilege',
    'the task role may use every key',
    (r, i) => void (taskStatements(r, i)[1]!.Resource = '*'),
  ],
  [
    'task-role-least-privilege',
    'the key usable outside S3 (no kms:ViaService)',
    (r, i) => void delete taskStatements(r, i)[1]!.Condition,
  ],
  [
    'task-role-least-privilege',
    'the task role may pass roles',
    (r, i) => void taskStatements(r, i).push({ Effect: 'Allow', Action: 'iam:PassRole', Resource: '*' }),
  ],
  [
    'task-role-least-privilege',
    'NotAction instead of actions',
    (r, i) => void taskStatements(r, i).push({ Effect: 'Allow', NotAction: 'iam:*', Resource: '*' }),
  ],
  [
    'task-role-least-privilege',
    'an AWS-managed policy on the task role',
    (r, i) => void (p(r, i.taskRole).ManagedPolicyArns = ['arn:aws:iam::aws:policy/AmazonS3FullAccess']),
  ],
  [
    'task-role-least-privilege',
    'anyone may assume the task role',
    (r, i) => void (p(r, i.taskRole).AssumeRolePolicyDocument.Statement[0].Principal = { AWS: '*' }),
  ],
  [
    'task-role-least-privilege',
    'the execution role reads recordings',
    (r, i) =>
      void p(r, i.executionPolicy).PolicyDocument.Statement.push({
        Effect: 'Allow',
        Action: 's3:GetObject',
        Resource: '*',
      }),
  ],
  [
    'task-role-least-privilege',
    'the task role cannot delete (retention would fail)',
    (r, i) => void (taskStatements(r, i)[0]!.Action = ['s3:GetObject', 's3:PutObject']),
  ],
  [
    'edge-tls-passthrough',
    'the NLB terminates TLS (the client certificate is lost)',
    (r, i) =>
      void Object.assign(p(r, i.listeners[0]!), {
        Protocol: 'TLS',
        Certificates: [{ CertificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/x' }],
      }),
  ],
  [
    'edge-tls-passthrough',
    'the target group speaks TLS to kennel',
    (r, i) => void (p(r, i.targetGroups[0]!).Protocol = 'TLS'),
  ],
  [
    'edge-tls-passthrough',
    'the client address is not preserved',
    (r, i) =>
      void (p(r, i.targetGroups[1]!).TargetGroupAttributes = [{ Key: 'preserve_client_ip.enabled', Value: 'false' }]),
  ],
  ['edge-tls-passthrough', 'an application load balancer', (r, i) => void (p(r, i.lb).Type = 'application')],
  ['edge-tls-passthrough', 'a listener on 22', (r, i) => void (p(r, i.listeners[1]!).Port = 22)],
  ['edge-tls-passthrough', 'the NLB without a security group', (r, i) => void delete p(r, i.lb).SecurityGroups],
  ['edge-tls-passthrough', 'the internet reaches kennel directly', (r, i) => addIngress(r, i.kennelSg, internet(8443))],
  ['edge-tls-passthrough', 'the NLB group admits SSH', (r, i) => addIngress(r, i.edge, internet(22))],
  [
    'edge-tls-passthrough',
    'kennel tasks get a public IP',
    (r, i) => void (p(r, i.services[0]!).NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp = 'ENABLED'),
  ],
  [
    'edge-tls-passthrough',
    'kennel tasks run in a public subnet',
    (r, i) => void p(r, i.services[1]!).NetworkConfiguration.AwsvpcConfiguration.Subnets.push({ Ref: i.publicSubnet }),
  ],
  ['no-plaintext-mqtt', '1883 open on the NLB group', (r, i) => addIngress(r, i.edge, internet(1883))],
  [
    'no-plaintext-mqtt',
    '1883 inside a port range',
    (r, i) =>
      addIngress(r, i.kennelSg, {
        IpProtocol: 'tcp',
        FromPort: 1024,
        ToPort: 2048,
        SourceSecurityGroupId: groupId(i.edge),
      }),
  ],
  ['no-plaintext-mqtt', 'a 1883 listener', (r, i) => void (p(r, i.listeners[0]!).Port = 1883)],
  [
    'no-plaintext-mqtt',
    'a 1883 port mapping',
    (r, i) => void container(r, i).PortMappings.push({ ContainerPort: 1883, Protocol: 'tcp' }),
  ],
  ['no-plaintext-mqtt', 'KENNEL_MQTT_PORT=1883', (r, i) => setEnv(r, i, 'KENNEL_MQTT_PORT', '1883')],
  ['metrics-not-public', '9464 open to the internet', (r, i) => addIngress(r, i.edge, internet(9464))],
  [
    'metrics-not-public',
    'every port open from the NLB',
    (r, i) => addIngress(r, i.kennelSg, { IpProtocol: '-1', SourceSecurityGroupId: groupId(i.edge) }),
  ],
  [
    'metrics-not-public',
    'the metrics port mapped',
    (r, i) => void container(r, i).PortMappings.push({ ContainerPort: 9464, Protocol: 'tcp' }),
  ],
  [
    'metrics-not-public',
    'health checks on the metrics port',
    (r, i) => void (p(r, i.targetGroups[0]!).HealthCheckPort = '9464'),
  ],
  ['env-production', 'KENNEL_ENV=development', (r, i) => setEnv(r, i, 'KENNEL_ENV', 'development')],
  [
    'env-production',
    'the default security contact (kennel refuses to start)',
    (r, i) => setEnv(r, i, 'KENNEL_SECURITY_CONTACT', 'mailto:security@example.com'),
  ],
  ['env-production', 'no TLS certificate (kennel refuses to start)', (r, i) => dropEnv(r, i, 'KENNEL_TLS_CERT')],
  [
    'env-production',
    'no SMTP secret: sign-up confirmations could not be mailed (kennel refuses to start)',
    (r, i) => dropSecret(r, i, 'KENNEL_SMTP_URL'),
  ],
  [
    'env-production',
    'an SMTP URL that turns TLS off (kennel refuses to start)',
    (r, i) => (
      dropSecret(r, i, 'KENNEL_SMTP_URL'), setEnv(r, i, 'KENNEL_SMTP_URL', 'smtp://relay.example:25?ignoreTLS=true')
    ),
  ],
  ['env-production', "kennel's default sender (kennel refuses to start)", (r, i) => dropEnv(r, i, 'KENNEL_MAIL_FROM')],
  [
    'env-production',
    'no public URL: kennel would hand out https://0.0.0.0:8443',
    (r, i) => dropEnv(r, i, 'KENNEL_PUBLIC_URL'),
  ],
  [
    'no-inline-secrets',
    'the master key in the plain environment',
    (r, i) => setEnv(r, i, 'KENNEL_MASTER_KEY', Buffer.alloc(32, 1).toString('base64')),
  ],
  [
    'no-inline-secrets',
    'a private key written into the template',
    (r, i) => setEnv(r, i, 'PEM_SERVER_KEY', '-----BEGIN PRIVATE KEY-----\nMIG…\n-----END PRIVATE KEY-----'),
  ],
  ['no-inline-secrets', 'a password in the plain environment', (r, i) => setEnv(r, i, 'DB_PASSWORD', 'hunter2hunter2')],
  [
    'no-inline-secrets',
    'a URL with a password in the plain environment',
    (r, i) => setEnv(r, i, 'KENNEL_ALERT_WEBHOOK', 'https://ops:hunter2@alerts.example/kennel'),
  ],
  [
    'no-inline-secrets',
    "the mail relay's password in the plain environment",
    (r, i) => setEnv(r, i, 'KENNEL_SMTP_URL', 'smtps://kennel:hunter2@smtp.example:465'),
  ],
  [
    'no-inline-secrets',
    'key files written before umask 077',
    (r, i) => editScript(r, i, (s) => s.replace('umask 077\n', '')),
  ],
  ['no-inline-secrets', 'a key file from the plain environment', (r, i) => dropSecret(r, i, 'PEM_DEVICE_CA_KEY')],
  [
    'no-inline-secrets',
    'a secret value written into the template',
    (r) =>
      void (r.Extra = {
        Type: 'AWS::SecretsManager::Secret',
        Properties: { SecretString: 'correct horse battery staple' },
      }),
  ],
  [
    'no-inline-secrets',
    'a Redis token written into the template',
    (r, i) => void (p(r, i.redis).AuthToken = 'correct-horse-battery-staple'),
  ],
]

export function controlAttacks(t: Test, s: Synthesized): void {
  const ids0 = ids(s)

  t.test('the synthesized production template holds every control', async (t) => {
    t.same(checkTemplate(s.json), [])
    t.equal(new Set(controls.map((c) => c.id)).size, controls.length, 'control ids are unique')
    for (const c of controls) t.match(c.requirement, /^R\d+(, R\d+)*$/, `${c.id} cites its requirement`)
  })

  for (const [control, attack, mutate] of attacks) {
    t.test(`${control} catches: ${attack}`, async (t) => {
      const template = structuredClone(s.json) as CfnTemplate & { Resources: Edit }
      mutate(template.Resources, ids0)
      const findings = checkTemplate(template)
      t.ok(
        findings.some((f) => f.control === control),
        `${control} reports it: ${JSON.stringify(findings)}`,
      )
      for (const f of findings) t.ok(f.path.length > 0 && f.message.length > 0, 'each finding names where and why')
    })
  }

  t.test('every control is exercised by at least one attack', async (t) => {
    t.same(
      controls.map((c) => c.id).filter((id) => !attacks.some(([c]) => c === id)),
      [],
    )
  })

  t.test(
    'an empty template fails the data-store, bucket, edge and environment controls instead of passing vacuously',
    async (t) => {
      const failed = new Set(checkTemplate({ Resources: {} }).map((f) => f.control))
      for (const id of [
        'db-not-public',
        'db-tls-required',
        'bucket-sse-kms',
        'task-role-least-privilege',
        'edge-tls-passthrough',
        'env-production',
      ])
        t.ok(failed.has(id), id)
    },
  )
}
