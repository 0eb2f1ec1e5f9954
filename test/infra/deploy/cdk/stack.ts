import type { Test } from 'tap'
import { newObjectKey } from '../../../../infra/blobstore/port.ts'
import { Match } from '../../../../infra/deploy/cdk/assertions.ts'
import { RECORDINGS_PREFIX } from '../../../../infra/deploy/cdk/container.ts'
import { idOf, type Synthesized } from './synthesized.ts'

// The synthesized production stack, property by property, with aws-cdk-lib's assertions: each
// `hasResourceProperties` below is one control of R14 as CloudFormation would receive it.

const secretsManagerReference = Match.objectLike({
  'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp('^\\{\\{resolve:secretsmanager:$')])],
})
const getAtt = (id: string, attr: string) => ({ 'Fn::GetAtt': [id, attr] })

/** the ingress resources of one security group */
function ingressOf(s: Synthesized, groupId: string): Array<Record<string, unknown>> {
  return Object.values(
    s.template.findResources('AWS::EC2::SecurityGroupIngress', { Properties: { GroupId: getAtt(groupId, 'GroupId') } }),
  ).map((r) => r.Properties as Record<string, unknown>)
}

export function stackAssertions(t: Test, s: Synthesized): void {
  const { stack, template } = s
  const bucket = idOf(stack, stack.recordings)
  const logs = idOf(stack, stack.accessLogs)
  const recordingsKey = idOf(stack, stack.recordingsKey)
  const db = idOf(stack, stack.database)
  const [kennelSg] = Object.keys(
    template.findResources('AWS::EC2::SecurityGroup', {
      Properties: { GroupDescription: Match.stringLikeRegexp('^kennel tasks') },
    }),
  )

  t.test(
    'PostgreSQL: private, TLS forced, encrypted with a rotating customer key, password in Secrets Manager (R7, R12)',
    async (t) => {
      template.hasResourceProperties('AWS::RDS::DBInstance', {
        PubliclyAccessible: false,
        StorageEncrypted: true,
        KmsKeyId: { 'Fn::GetAtt': [Match.anyValue(), 'Arn'] },
        MasterUserPassword: secretsManagerReference,
        DBParameterGroupName: { Ref: Match.anyValue() },
      })
      template.hasResourceProperties('AWS::RDS::DBParameterGroup', {
        Parameters: Match.objectLike({ 'rds.force_ssl': '1' }),
      })
      const dbProps = template.findResources('AWS::RDS::DBInstance')[db]!.Properties
      template.hasResource('AWS::KMS::Key', { Properties: Match.objectLike({ EnableKeyRotation: true }) })
      t.equal(
        template.toJSON().Resources[dbProps.KmsKeyId['Fn::GetAtt'][0]].Properties.EnableKeyRotation,
        true,
        'the database key rotates',
      )
      const dbSg = dbProps.VPCSecurityGroups[0]['Fn::GetAtt'][0]
      t.same(
        ingressOf(s, dbSg).map((r) => [r.IpProtocol, r.FromPort, r.ToPort, r.SourceSecurityGroupId, r.CidrIp]),
        [['tcp', 5432, 5432, getAtt(kennelSg!, 'GroupId'), undefined]],
        'only the kennel tasks, only 5432',
      )
      t.equal(
        template.toJSON().Resources[dbSg].Properties.SecurityGroupIngress,
        undefined,
        'no inline ingress on the database group',
      )
      template.hasResourceProperties('AWS::SecretsManager::Secret', {
        GenerateSecretString: Match.objectLike({
          SecretStringTemplate: '{"username":"kennel"}',
          GenerateStringKey: 'password',
        }),
      })
    },
  )

  t.test(
    'Redis: TLS required, encrypted at rest, AUTH token from Secrets Manager, only the kennel tasks on 6379 (R7)',
    async (t) => {
      template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
        TransitEncryptionEnabled: true,
        TransitEncryptionMode: 'required',
        AtRestEncryptionEnabled: true,
        AuthToken: secretsManagerReference,
      })
      const redis = Object.values(template.findResources('AWS::ElastiCache::ReplicationGroup'))[0]!.Properties
      const redisSg = redis.SecurityGroupIds[0]['Fn::GetAtt'][0]
      t.same(
        ingressOf(s, redisSg).map((r) => [r.IpProtocol, r.FromPort, r.ToPort, r.SourceSecurityGroupId]),
        [['tcp', 6379, 6379, getAtt(kennelSg!, 'GroupId')]],
      )
    },
  )

  t.test(
    'the recordings bucket: all four Block Public Access settings, SSE-KMS with a rotating customer key, versioned, logged, expiring (R5, R12, R14)',
    async (t) => {
      template.hasResourceProperties('AWS::S3::Bucket', {
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          IgnorePublicAcls: true,
          BlockPublicPolicy: true,
          RestrictPublicBuckets: true,
        },
        OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [
            Match.objectLike({
              ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: getAtt(recordingsKey, 'Arn') },
            }),
          ],
        },
        VersioningConfiguration: { Status: 'Enabled' },
        LoggingConfiguration: { DestinationBucketName: { Ref: logs }, LogFilePrefix: 'recordings/' },
        LifecycleConfiguration: {
          Rules: Match.arrayWith([
            Match.objectLike({
              Status: 'Enabled',
              ExpirationInDays: 365,
              NoncurrentVersionExpiration: { NoncurrentDays: 30 },
            }),
          ]),
        },
      })
      t.equal(
        template.toJSON().Resources[recordingsKey].Properties.EnableKeyRotation,
        true,
        'the recordings key rotates',
      )
      t.equal(template.toJSON().Resources[bucket].Properties.WebsiteConfiguration, undefined)
      for (const b of [bucket, logs]) {
        template.hasResourceProperties('AWS::S3::BucketPolicy', {
          Bucket: { Ref: b },
          PolicyDocument: {
            Statement: Match.arrayWith([
              {
                Effect: 'Deny',
                Principal: { AWS: '*' },
                Action: 's3:*',
                Resource: [getAtt(b, 'Arn'), { 'Fn::Join': ['', [getAtt(b, 'Arn'), '/*']] }],
                Condition: { Bool: { 'aws:SecureTransport': 'false' } },
              },
            ]),
          },
        })
      }
      const recordingsPolicy = Object.values(
        template.findResources('AWS::S3::BucketPolicy', { Properties: { Bucket: { Ref: bucket } } }),
      )[0]!.Properties
      t.same(
        recordingsPolicy.PolicyDocument.Statement.map((st: { Effect: string }) => st.Effect),
        ['Deny'],
        'the recordings bucket policy only denies',
      )
    },
  )

  t.test('the access-log bucket: private, TLS only, SSE-S3 (the only encryption S3 log delivery accepts)', async () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        IgnorePublicAcls: true,
        BlockPublicPolicy: true,
        RestrictPublicBuckets: true,
      },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
    })
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: logs },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'logging.s3.amazonaws.com' },
            Action: 's3:PutObject',
          }),
        ]),
      },
    })
  })

  t.test(
    'the task role: Get/Put/DeleteObject under the recordings prefix and the recordings key through S3, nothing else (R5, R14)',
    async (t) => {
      t.ok(newObjectKey().startsWith(RECORDINGS_PREFIX), 'the prefix is the one kennel writes every object key with')
      const role = idOf(stack, stack.taskRole)
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: role }],
        PolicyDocument: {
          Statement: [
            {
              Sid: 'RecordingObjects',
              Effect: 'Allow',
              Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
              Resource: { 'Fn::Join': ['', [getAtt(bucket, 'Arn'), `/${RECORDINGS_PREFIX}*`]] },
            },
            {
              Sid: 'RecordingsKeyThroughS3',
              Effect: 'Allow',
              Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
              Resource: getAtt(recordingsKey, 'Arn'),
              Condition: {
                StringEquals: {
                  'kms:ViaService': { 'Fn::Join': ['', ['s3.', { Ref: 'AWS::Region' }, '.amazonaws.com']] },
                },
              },
            },
          ],
          Version: '2012-10-17',
        },
      })
      t.equal(
        Object.keys(
          template.findResources('AWS::IAM::Policy', { Properties: { Roles: Match.arrayWith([{ Ref: role }]) } }),
        ).length,
        1,
        'no other policy is attached to it',
      )
      t.equal(template.toJSON().Resources[role].Properties.ManagedPolicyArns, undefined, 'no managed policy')
      template.hasResourceProperties('AWS::IAM::Role', {
        AssumeRolePolicyDocument: {
          Statement: [
            Match.objectLike({
              Principal: { Service: 'ecs-tasks.amazonaws.com' },
              Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
            }),
          ],
        },
      })
    },
  )

  t.test(
    'the edge: an internet-facing NLB with TCP listeners on 8883 and 8443 only, client address kept, nothing else faces the internet (R2, R6, R9)',
    async (t) => {
      template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
        Type: 'network',
        Scheme: 'internet-facing',
        SecurityGroups: Match.anyValue(),
      })
      template.resourceCountIs('AWS::ElasticLoadBalancingV2::Listener', 2)
      for (const port of [8883, 8443]) {
        template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: port, Protocol: 'TCP' })
        template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
          Port: port,
          Protocol: 'TCP',
          TargetType: 'ip',
          TargetGroupAttributes: Match.arrayWith([{ Key: 'preserve_client_ip.enabled', Value: 'true' }]),
          HealthCheckProtocol: 'HTTPS',
          HealthCheckPort: '8443',
          HealthCheckPath: '/healthz',
        })
      }
      const outside = Object.entries(template.findResources('AWS::EC2::SecurityGroup')).flatMap(([id, r]) =>
        (r.Properties.SecurityGroupIngress ?? [])
          .filter((i: { CidrIp?: string }) => i.CidrIp !== undefined)
          .map((i: { CidrIp: string; FromPort: number; ToPort: number }) => [id, i.CidrIp, i.FromPort, i.ToPort]),
      )
      const edge = idOf(stack, stack.edge)
      t.same(
        outside,
        [
          [edge, '0.0.0.0/0', 8883, 8883],
          [edge, '0.0.0.0/0', 8443, 8443],
        ],
        'only the NLB group admits outside addresses, only on the two TLS ports',
      )
      t.same(
        ingressOf(s, kennelSg!).map((r) => [r.FromPort, r.SourceSecurityGroupId]),
        [
          [8883, getAtt(edge, 'GroupId')],
          [8443, getAtt(edge, 'GroupId')],
        ],
        'kennel tasks admit only the NLB',
      )
      template.allResourcesProperties('AWS::ECS::Service', {
        NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'DISABLED' }) },
      })
    },
  )

  t.test(
    'kennel tasks reach out only on tcp/443 (AWS APIs, webhook), tcp/465 and tcp/587 (the mail relay) and the two data stores (R14)',
    async (t) => {
      const resources = template.toJSON().Resources
      const db = resources[idOf(stack, stack.database)].Properties
      const redis = Object.values(template.findResources('AWS::ElastiCache::ReplicationGroup'))[0]!.Properties
      const inline = (resources[kennelSg!].Properties.SecurityGroupEgress ?? []) as Array<Record<string, unknown>>
      const separate = Object.values(
        template.findResources('AWS::EC2::SecurityGroupEgress', {
          Properties: { GroupId: getAtt(kennelSg!, 'GroupId') },
        }),
      ).map((r) => r.Properties as Record<string, unknown>)
      const rules = [...inline, ...separate].map((r) => [
        r.IpProtocol,
        r.FromPort,
        r.ToPort,
        r.CidrIp ?? r.DestinationSecurityGroupId,
      ])
      t.same(rules, [
        ['tcp', 443, 443, '0.0.0.0/0'],
        ['tcp', 465, 465, '0.0.0.0/0'],
        ['tcp', 587, 587, '0.0.0.0/0'],
        ['tcp', 5432, 5432, getAtt(db.VPCSecurityGroups[0]['Fn::GetAtt'][0], 'GroupId')],
        ['tcp', 6379, 6379, getAtt(redis.SecurityGroupIds[0]['Fn::GetAtt'][0], 'GroupId')],
      ])
    },
  )

  t.test(
    'kennel containers: production, secrets by reference, no plaintext MQTT or metrics port mapped, retention matching the bucket (R8, R11)',
    async (t) => {
      const defs = Object.values(template.findResources('AWS::ECS::TaskDefinition')).flatMap(
        (r) => r.Properties.ContainerDefinitions,
      )
      t.equal(defs.length, 2, 'broker and API')
      for (const c of defs) {
        const env = Object.fromEntries(c.Environment.map((e: { Name: string; Value: unknown }) => [e.Name, e.Value]))
        t.equal(env.KENNEL_ENV, 'production')
        t.equal(env.KENNEL_RETENTION_RECORDINGS_DAYS, '365', 'the same number as the lifecycle rule')
        t.same(env.KENNEL_S3_KMS_KEY_ID, getAtt(recordingsKey, 'Arn'), 'presigned uploads name the bucket key')
        t.same(env.KENNEL_S3_BUCKET, { Ref: bucket })
        t.same(c.Secrets.map((x: { Name: string }) => x.Name).sort(), [
          'DB_PASSWORD',
          'DB_USER',
          'KENNEL_MASTER_KEY',
          'KENNEL_SMTP_URL',
          'PEM_AUDIT_KEY',
          'PEM_DEVICE_CA_CERT',
          'PEM_DEVICE_CA_KEY',
          'PEM_SERVER_CERT',
          'PEM_SERVER_KEY',
          'REDIS_AUTH_TOKEN',
        ])
        t.match(
          JSON.stringify(c.Secrets.find((x: { Name: string }) => x.Name === 'KENNEL_SMTP_URL').ValueFrom),
          /:secret:kennel\/production\/smtp-url/,
          "the SMTP URL (with the relay password) from the operator's secret",
        )
        t.equal(
          env.KENNEL_PUBLIC_URL,
          'https://api.kennel.example',
          "the context publicUrl, not the listeners' 0.0.0.0",
        )
        t.equal(env.KENNEL_MAIL_FROM, 'kennel <no-reply@kennel.example>')
        t.notOk(
          Object.keys(env).some((k) => /PASSWORD|TOKEN|MASTER_KEY/.test(k)),
          'no secret in the plain environment',
        )
        const ports = c.PortMappings.map((m: { ContainerPort: number }) => m.ContainerPort)
        t.ok(ports.length === 1 && [8883, 8443].includes(ports[0]), `one TLS port mapped (${ports})`)
        const script = c.Command.join('\n')
        t.match(script, /^umask 077$/m)
        t.match(script, /sslmode=verify-full/)
        t.match(script, /rediss:\/\//)
      }
    },
  )
}
