import { Validations } from 'aws-cdk-lib'
import nag from 'cdk-nag'
import type { CfnBucket } from 'aws-cdk-lib/aws-s3'
import type { IConstruct } from 'constructs'
import type { KennelStack } from './stack.ts'

// cdk-nag's AwsSolutions pack over the stack (R14). Each finding it raises on purpose is
// acknowledged on the one construct it concerns, with the reason it is deliberate; every other
// error fails `kennel deploy check` and the tests. (cdk-nag 3 takes acknowledgements through
// CDK's own Validations API; a finding id names the rule and, for IAM5, the exact resource.)

export interface NagFinding {
  rule: string
  path: string
  message: string
}

const ack = (scope: IConstruct, id: string, reason: string) => Validations.of(scope).acknowledge({ id, reason })

export function acknowledgeDeliberateFindings(stack: KennelStack): void {
  ack(
    stack.edge,
    'AwsSolutions-EC23',
    'The NLB is the public edge for toys and parents: it admits 0.0.0.0/0 on tcp/8883 and tcp/8443 only, and nothing else in the stack admits any outside address.',
  )
  ack(
    stack.loadBalancer,
    'AwsSolutions-ELB2',
    'NLB access logs record only TLS listeners; these listeners are TCP so that mutual TLS ends at kennel. VPC flow logs record every connection and kennel records each connect and failed handshake as an event (R19).',
  )
  ack(
    stack.database,
    'AwsSolutions-RDS11',
    'A non-default port hides nothing from a scanner inside the VPC; 5432 is admitted only from the kennel security group, over TLS (rds.force_ssl=1), with a generated password.',
  )
  ack(
    stack.redis,
    'AwsSolutions-AEC5',
    'A non-default port hides nothing from a scanner inside the VPC; 6379 is admitted only from the kennel security group, with TLS required and an AUTH token.',
  )
  // on the instance: its generated secret is a child of it (instance.secret is the attachment)
  ack(
    stack.database,
    'AwsSolutions-SMG4',
    'kennel reads the password once at task start; automatic rotation would lock new pool connections out until every task restarts. Rotate by changing the password and the secret together, then forcing a new deployment (docs/DEPLOYMENT.md).',
  )
  ack(
    stack.redisToken,
    'AwsSolutions-SMG4',
    'ElastiCache accepts a new AUTH token only through ModifyReplicationGroup with a rotate strategy, which Secrets Manager rotation does not drive; rotate with the two-step token update (ROTATE, new deployment, SET) in docs/DEPLOYMENT.md.',
  )
  ack(
    stack.taskRole,
    `AwsSolutions-IAM5[Resource::<${stack.getLogicalId(stack.recordings.node.defaultChild as CfnBucket)}.Arn>/rec-*]`,
    'Recording object keys are random (rec-<40 hex>) so they cannot be listed in a policy; the prefix is the narrowest scope, with only Get/Put/DeleteObject and no ListBucket.',
  )
  if (stack.imageRepository !== undefined) {
    ack(
      stack.executionRole,
      'AwsSolutions-IAM5[Resource::*]',
      'ecr:GetAuthorizationToken has no resource-level permissions in IAM; the image pull actions themselves are limited to the one repository the image comes from.',
    )
  }
  for (const service of stack.services) {
    ack(
      service.taskDefinition,
      'AwsSolutions-ECS2',
      'The environment holds only non-secret settings (ports, bucket name, key ARN, host names, file paths); every secret comes from Secrets Manager through the container secrets, and the no-inline-secrets control checks it.',
    )
  }
}

/** cdk-nag AwsSolutions errors that are not acknowledged (warnings are not findings) */
export function nagErrors(scope: IConstruct): NagFinding[] {
  const report = new nag.AwsSolutionsChecks().validateScope(scope)
  return report.violations
    .filter((v) => v.severity === 'error')
    .flatMap((v) =>
      v.violatingResources.map((r) => ({
        rule: v.ruleName,
        path: r.constructPath ?? '(no construct path)',
        message: v.description,
      })),
    )
}

/** every cdk-nag acknowledgement under `scope` (aws-cdk-lib records its own for CloudFormation validation): rule id, reason, construct path */
export function acknowledgements(scope: IConstruct): Array<{ id: string; reason: string; path: string }> {
  return scope.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) =>
        Object.entries(m.data as Record<string, string>).map(([k, reason]) => ({
          id: k.replace(/^annotation::/i, ''),
          reason,
          path: c.node.path,
        })),
      )
      .filter((a) => a.id.startsWith('AwsSolutions-')),
  )
}
