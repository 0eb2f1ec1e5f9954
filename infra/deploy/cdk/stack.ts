import { Aws, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib'
import * as ec2 from 'aws-cdk-lib/aws-ec2'
import * as ecr from 'aws-cdk-lib/aws-ecr'
import * as ecs from 'aws-cdk-lib/aws-ecs'
import * as elasticache from 'aws-cdk-lib/aws-elasticache'
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2'
import * as iam from 'aws-cdk-lib/aws-iam'
import * as kms from 'aws-cdk-lib/aws-kms'
import * as logs from 'aws-cdk-lib/aws-logs'
import * as rds from 'aws-cdk-lib/aws-rds'
import * as s3 from 'aws-cdk-lib/aws-s3'
import * as secrets from 'aws-cdk-lib/aws-secretsmanager'
import type { Construct } from 'constructs'
import {
  entrypoint,
  environment,
  KEY_FILES,
  RECORDINGS_PREFIX,
  SECRET_SETTINGS,
  URL_SECRETS,
  URL_UNSAFE,
} from './container.ts'

// kennel in production on AWS (R14): what CloudPets left open — a database on the internet without
// a password, recordings in a public bucket — cannot be deployed from here. The checks in
// controls.ts and cdk-nag's AwsSolutions pack prove each property on the synthesized template.
//
//   internet ─tcp/8883, tcp/8443─▶ NLB (public subnets; TCP listeners = TLS passthrough, so mutual
//   TLS ends at kennel and the toy's certificate reaches it; the client address is kept)
//        ├─8883─▶ broker service ┐ kennel tasks in private subnets, no public address,
//        └─8443─▶ API service    ┘ reachable only from the NLB
//                 ├─5432 TLS─▶ PostgreSQL (isolated subnets)
//                 ├─6379 TLS+AUTH─▶ Redis (isolated subnets)
//                 ├─presigned URLs─▶ S3 recordings bucket (SSE-KMS, TLS only, never public)
//                 └─465/587 TLS─▶ the operator's mail relay (sign-up confirmations)

export const MQTT_PORT = 8883
export const API_PORT = 8443
const POSTGRES_PORT = 5432
const REDIS_PORT = 6379
/** SMTP submission (RFC 8314 implicit TLS, RFC 6409 with STARTTLS): the ports of smtps:// and smtp:// */
const SMTP_PORTS = [
  [465, 'smtps:// (TLS from the first byte)'],
  [587, 'smtp:// with STARTTLS required'],
] as const

export interface KennelStackProps extends StackProps {
  /** the kennel image (`registry/repository:tag` or `…@sha256:…`); this stack builds nothing */
  image: string
  /** KENNEL_SECURITY_CONTACT (R10): production refuses the default */
  securityContact: string
  /** KENNEL_RETENTION_RECORDINGS_DAYS: kennel deletes older recordings, and so does the bucket's lifecycle rule */
  retentionDays: number
  /** days an overwritten or deleted recording stays restorable as a noncurrent version */
  recoveryDays: number
  /** KENNEL_ALERT_WEBHOOK (R11) */
  alertWebhook?: string | undefined
  /** KENNEL_PUBLIC_URL: the https origin clients reach the NLB at (the listeners bind 0.0.0.0, which is no origin) */
  publicUrl: string
  /** KENNEL_MAIL_FROM: the sender of sign-up confirmations; production refuses kennel's default */
  mailFrom: string
  /** where the operator keeps kennel's key material in Secrets Manager, e.g. `kennel/production/` */
  secretsPrefix: string
  /** path of the Amazon RDS CA bundle inside the image (sslrootcert) */
  rdsCaBundle: string
  brokerTasks: number
  apiTasks: number
}

export class KennelStack extends Stack {
  readonly vpc: ec2.Vpc
  readonly recordings: s3.Bucket
  readonly accessLogs: s3.Bucket
  readonly recordingsKey: kms.Key
  readonly database: rds.DatabaseInstance
  readonly redis: elasticache.CfnReplicationGroup
  readonly redisToken: secrets.Secret
  readonly edge: ec2.SecurityGroup
  readonly loadBalancer: elbv2.NetworkLoadBalancer
  readonly taskRole: iam.Role
  readonly executionRole: iam.Role
  /** the ECR repository the image is pulled from, when it is one */
  readonly imageRepository: ecr.IRepository | undefined
  readonly services: ecs.FargateService[]

  constructor(scope: Construct, id: string, props: KennelStackProps) {
    super(scope, id, props)

    // R14 network separation: public subnets hold only the NLB (and the NAT gateways); kennel
    // runs in private subnets (egress through NAT: tcp/443 for AWS APIs and the alert webhook,
    // tcp/465 and tcp/587 for the mail relay); data stores in isolated subnets without any route out.
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 2,
      subnetConfiguration: [
        { name: 'edge', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'app', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 24 },
        { name: 'data', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
      ],
      gatewayEndpoints: {
        S3: {
          service: ec2.GatewayVpcEndpointAwsService.S3,
          subnets: [{ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }],
        },
      },
    })
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(
        new logs.LogGroup(this, 'FlowLogs', { retention: logs.RetentionDays.ONE_YEAR }),
      ),
      trafficType: ec2.FlowLogTrafficType.ALL,
    })
    const app = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }
    const data = { subnetType: ec2.SubnetType.PRIVATE_ISOLATED }

    // the only group that admits the internet, and only on the two TLS ports (no 1883, no 9464)
    this.edge = new ec2.SecurityGroup(this, 'EdgeSg', {
      vpc: this.vpc,
      description: 'kennel NLB: the internet on 8883 (MQTT over TLS) and 8443 (HTTPS) only',
      allowAllOutbound: false,
    })
    for (const port of [MQTT_PORT, API_PORT])
      this.edge.addIngressRule(
        ec2.Peer.anyIpv4(),
        ec2.Port.tcp(port),
        `kennel ${port} from the internet (TLS passthrough)`,
      )
    const kennelSg = new ec2.SecurityGroup(this, 'KennelSg', {
      vpc: this.vpc,
      description: 'kennel tasks: reachable only from the NLB',
      allowAllOutbound: false,
    })
    for (const port of [MQTT_PORT, API_PORT]) {
      kennelSg.addIngressRule(this.edge, ec2.Port.tcp(port), `kennel ${port} from the NLB`)
      this.edge.addEgressRule(kennelSg, ec2.Port.tcp(port), `to kennel ${port}`)
    }
    kennelSg.addEgressRule(
      ec2.Peer.anyIpv4(),
      ec2.Port.tcp(443),
      'AWS APIs (ECR, Secrets Manager, Logs, S3), the alert webhook',
    )
    // the relay's address is inside the KENNEL_SMTP_URL secret, so the stack cannot narrow these
    // two to it; kennel speaks TLS on both (smtps://, or STARTTLS required) and never plaintext on 25
    for (const [port, use] of SMTP_PORTS)
      kennelSg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(port), `mail relay (KENNEL_SMTP_URL): ${use}`)
    const dbSg = new ec2.SecurityGroup(this, 'DatabaseSg', {
      vpc: this.vpc,
      description: 'kennel PostgreSQL: 5432 from kennel tasks only',
      allowAllOutbound: false,
    })
    const redisSg = new ec2.SecurityGroup(this, 'RedisSg', {
      vpc: this.vpc,
      description: 'kennel Redis: 6379 from kennel tasks only',
      allowAllOutbound: false,
    })
    dbSg.addIngressRule(kennelSg, ec2.Port.tcp(POSTGRES_PORT), 'PostgreSQL from kennel')
    redisSg.addIngressRule(kennelSg, ec2.Port.tcp(REDIS_PORT), 'Redis from kennel')
    kennelSg.addEgressRule(dbSg, ec2.Port.tcp(POSTGRES_PORT), 'to PostgreSQL')
    kennelSg.addEgressRule(redisSg, ec2.Port.tcp(REDIS_PORT), 'to Redis')

    // R12: data at rest under customer keys that rotate yearly
    const dataKey = new kms.Key(this, 'DataKey', {
      description: 'kennel PostgreSQL and Redis storage',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    })
    this.recordingsKey = new kms.Key(this, 'RecordingsKey', {
      description: 'kennel recordings (SSE-KMS)',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    })

    // R7: the event store. No public address, isolated subnets, TLS forced by the server
    // (rds.force_ssl), storage encrypted, the password generated into Secrets Manager.
    this.database = new rds.DatabaseInstance(this, 'Database', {
      engine: rds.DatabaseInstanceEngine.postgres({ version: rds.PostgresEngineVersion.VER_16 }),
      instanceType: ec2.InstanceType.of(ec2.InstanceClass.M7G, ec2.InstanceSize.LARGE),
      vpc: this.vpc,
      vpcSubnets: data,
      securityGroups: [dbSg],
      publiclyAccessible: false,
      port: POSTGRES_PORT,
      databaseName: 'kennel',
      credentials: rds.Credentials.fromGeneratedSecret('kennel', { excludeCharacters: URL_UNSAFE }),
      parameterGroup: new rds.ParameterGroup(this, 'DatabaseParameters', {
        engine: rds.DatabaseInstanceEngine.postgres({ version: rds.PostgresEngineVersion.VER_16 }),
        parameters: { 'rds.force_ssl': '1', password_encryption: 'scram-sha-256' },
      }),
      storageEncrypted: true,
      storageEncryptionKey: dataKey,
      multiAz: true,
      storageType: rds.StorageType.GP3,
      allocatedStorage: 100,
      maxAllocatedStorage: 1000,
      backupRetention: Duration.days(14),
      deletionProtection: true,
      iamAuthentication: true,
      cloudwatchLogsExports: ['postgresql'],
      removalPolicy: RemovalPolicy.SNAPSHOT,
    })

    // R7: rate limits and broker clustering. TLS required in transit, encrypted at rest, AUTH
    // token generated into Secrets Manager (CloudFormation resolves it; the template holds a reference).
    this.redisToken = new secrets.Secret(this, 'RedisAuthToken', {
      description: 'kennel Redis AUTH token',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    })
    const redisSubnets = new elasticache.CfnSubnetGroup(this, 'RedisSubnets', {
      description: 'kennel Redis: isolated subnets',
      subnetIds: this.vpc.selectSubnets(data).subnetIds,
    })
    this.redis = new elasticache.CfnReplicationGroup(this, 'Redis', {
      replicationGroupDescription: 'kennel rate limits and broker clustering',
      engine: 'redis',
      engineVersion: '7.1',
      cacheNodeType: 'cache.m7g.large',
      numCacheClusters: 2,
      automaticFailoverEnabled: true,
      multiAzEnabled: true,
      port: REDIS_PORT,
      cacheSubnetGroupName: redisSubnets.ref,
      securityGroupIds: [redisSg.securityGroupId],
      transitEncryptionEnabled: true,
      transitEncryptionMode: 'required',
      atRestEncryptionEnabled: true,
      kmsKeyId: dataKey.keyArn,
      authToken: this.redisToken.secretValue.unsafeUnwrap(),
    })

    // R5, R12, R14: the recordings bucket. Never public, TLS only, SSE-KMS with the customer key,
    // versioned, every request logged, recordings deleted after the retention period.
    this.accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      // S3 delivers server access logs only to buckets encrypted with SSE-S3
      encryption: s3.BucketEncryption.S3_MANAGED,
      versioned: true,
      lifecycleRules: [{ expiration: Duration.days(400), noncurrentVersionExpiration: Duration.days(30) }],
      removalPolicy: RemovalPolicy.RETAIN,
    })
    this.recordings = new s3.Bucket(this, 'Recordings', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.recordingsKey,
      bucketKeyEnabled: true,
      versioned: true,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'recordings/',
      lifecycleRules: [
        {
          id: 'retention',
          expiration: Duration.days(props.retentionDays),
          // a deleted or expired recording is gone for good once its recovery window has passed
          noncurrentVersionExpiration: Duration.days(props.recoveryDays),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
        { id: 'delete-markers', expiredObjectDeleteMarker: true },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    })

    // R5, R14: the task role presigns recording URLs and reads, writes and deletes recording
    // objects: those three actions under the recordings prefix, and the recordings key only
    // through S3. No ListBucket, no other bucket, no other key.
    this.taskRole = new iam.Role(this, 'TaskRole', {
      description: 'kennel tasks: recordings objects and their key, nothing else',
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
    })
    this.taskRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'RecordingObjects',
        actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
        resources: [this.recordings.arnForObjects(`${RECORDINGS_PREFIX}*`)],
      }),
    )
    this.taskRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'RecordingsKeyThroughS3',
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [this.recordingsKey.keyArn],
        conditions: { StringEquals: { 'kms:ViaService': `s3.${Aws.REGION}.amazonaws.com` } },
      }),
    )
    this.executionRole = new iam.Role(this, 'ExecutionRole', {
      description: 'ECS on behalf of kennel tasks: pull the image, write logs, read the secrets below',
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
    })

    // R8: secrets reach the tasks by reference only
    const dbSecret = this.database.secret!
    const keyMaterial = (name: string) =>
      secrets.Secret.fromSecretNameV2(this, `Secret-${name}`, `${props.secretsPrefix}${name}`)
    const taskSecrets: Record<string, ecs.Secret> = {
      ...Object.fromEntries(KEY_FILES.map((k) => [k.variable, ecs.Secret.fromSecretsManager(keyMaterial(k.secret))])),
      ...Object.fromEntries(SECRET_SETTINGS.map((s) => [s.env, ecs.Secret.fromSecretsManager(keyMaterial(s.secret))])),
      [URL_SECRETS.dbUser]: ecs.Secret.fromSecretsManager(dbSecret, 'username'),
      [URL_SECRETS.dbPassword]: ecs.Secret.fromSecretsManager(dbSecret, 'password'),
      [URL_SECRETS.redisToken]: ecs.Secret.fromSecretsManager(this.redisToken),
    }
    const taskEnvironment = environment(
      {
        bucketName: this.recordings.bucketName,
        region: Aws.REGION,
        kmsKeyArn: this.recordingsKey.keyArn,
        retentionDays: props.retentionDays,
        securityContact: props.securityContact,
        alertWebhook: props.alertWebhook,
        publicUrl: props.publicUrl,
        mailFrom: props.mailFrom,
      },
      {
        dbHost: this.database.dbInstanceEndpointAddress,
        dbPort: String(POSTGRES_PORT),
        redisHost: this.redis.attrPrimaryEndPointAddress,
        redisPort: String(REDIS_PORT),
        rdsCaBundle: props.rdsCaBundle,
      },
    )

    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: this.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    })
    const logGroup = new logs.LogGroup(this, 'KennelLogs', { retention: logs.RetentionDays.ONE_YEAR })
    const { image, repository } = containerImage(this, props.image)
    this.imageRepository = repository

    // R2: plain TCP listeners pass the TLS session through, so mutual TLS ends at kennel; the
    // client address is preserved for the denylist (R9) and per-IP limits (R6).
    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'Edge', {
      vpc: this.vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      securityGroups: [this.edge],
      crossZoneEnabled: true,
      deletionProtection: true,
    })

    // One process runs broker, API and projections (`kennel start`); two services so that each
    // scales on its own and receives only its own port from the NLB.
    const serve = (name: string, port: number, desiredCount: number): ecs.FargateService => {
      const task = new ecs.FargateTaskDefinition(this, `${name}Task`, {
        cpu: 1024,
        memoryLimitMiB: 2048,
        taskRole: this.taskRole,
        executionRole: this.executionRole,
      })
      task.addContainer('kennel', {
        image,
        entryPoint: ['sh', '-c'],
        command: [entrypoint()],
        environment: taskEnvironment,
        secrets: taskSecrets,
        portMappings: [{ containerPort: port, protocol: ecs.Protocol.TCP }],
        logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: name.toLowerCase() }),
      })
      const service = new ecs.FargateService(this, `${name}Service`, {
        cluster,
        taskDefinition: task,
        desiredCount,
        vpcSubnets: app,
        securityGroups: [kennelSg],
        assignPublicIp: false,
        circuitBreaker: { rollback: true },
        minHealthyPercent: 100,
      })
      this.loadBalancer
        .addListener(`${name}Listener`, { port, protocol: elbv2.Protocol.TCP })
        .addTargets(`${name}Targets`, {
          port,
          protocol: elbv2.Protocol.TCP,
          preserveClientIp: true,
          targets: [service.loadBalancerTarget({ containerName: 'kennel', containerPort: port })],
          // kennel answers GET /healthz on the API port in both services; a bare TCP probe on 8883
          // would be a failed toy handshake every few seconds
          healthCheck: { protocol: elbv2.Protocol.HTTPS, port: String(API_PORT), path: '/healthz' },
        })
      return service
    }
    this.services = [serve('Broker', MQTT_PORT, props.brokerTasks), serve('Api', API_PORT, props.apiTasks)]
  }
}

const ECR_IMAGE = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com\/([^:@]+)(?::([^@]+)|@(sha256:[0-9a-f]{64}))$/

/** an ECR image gets pull permissions on its repository only; any other registry is pulled as it is */
function containerImage(
  scope: Construct,
  uri: string,
): { image: ecs.ContainerImage; repository: ecr.IRepository | undefined } {
  const m = ECR_IMAGE.exec(uri)
  if (m === null) return { image: ecs.ContainerImage.fromRegistry(uri), repository: undefined }
  const [, account, region, name, tag, digest] = m
  const repository = ecr.Repository.fromRepositoryAttributes(scope, 'ImageRepository', {
    repositoryArn: `arn:${Aws.PARTITION}:ecr:${region}:${account}:repository/${name}`,
    repositoryName: name!,
  })
  return { image: ecs.ContainerImage.fromEcrRepository(repository, tag ?? digest), repository }
}
