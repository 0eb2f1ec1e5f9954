import { list, obj, ofType, props, render, settingOf, target, type Json, type JsonObject } from '../template.ts'
import type { Control, Facts, Problem } from './facts.ts'

// R5, R12, R14: no bucket is ever public or reachable without TLS; the recordings bucket
// encrypts with the customer key kennel presigns with, keeps versions, logs every request and
// forgets recordings after the retention period. CloudPets' recordings were anonymously
// readable from S3.

const FLAGS = ['BlockPublicAcls', 'IgnorePublicAcls', 'BlockPublicPolicy', 'RestrictPublicBuckets'] as const

const NO_RECORDINGS: Problem = {
  path: 'KENNEL_S3_BUCKET',
  message: 'the kennel containers do not all name one S3 bucket of this template',
}

/** the statements of every bucket policy attached to `bucket` */
function statements(f: Facts, bucket: string): Array<[JsonObject, string]> {
  return ofType(f.template, 'AWS::S3::BucketPolicy')
    .filter(([, p]) => target(p.Bucket) === bucket)
    .flatMap(([id, p]) =>
      list(obj(p.PolicyDocument).Statement).map((s, i): [JsonObject, string] => [
        obj(s),
        `${id}.PolicyDocument.Statement[${i}]`,
      ]),
    )
}

/** IAM principal that means "anyone" */
function anyone(principal: Json | undefined): boolean {
  if (principal === '*') return true
  return Object.values(obj(principal)).some((v) => list(v).includes('*'))
}

const eachBucket = (f: Facts, check: (id: string, p: JsonObject) => Problem[]): Problem[] =>
  ofType(f.template, 'AWS::S3::Bucket').flatMap(([id, p]) => check(id, p))

function recordingsBucket(f: Facts, check: (id: string, p: JsonObject) => Problem[]): Problem[] {
  return f.recordings === undefined ? [NO_RECORDINGS] : check(f.recordings, props(f.template.Resources?.[f.recordings]))
}

export const bucketBlockPublicAccess: Control = {
  id: 'bucket-block-public-access',
  requirement: 'R5, R14',
  holds: 'every bucket has all four Block Public Access settings, so no ACL or policy can make an object public',
  check: (f) =>
    eachBucket(f, (id, p) => {
      const bpa = obj(p.PublicAccessBlockConfiguration)
      return FLAGS.filter((flag) => bpa[flag] !== true).map((flag) => ({
        path: `${id}.PublicAccessBlockConfiguration.${flag}`,
        message: 'must be true',
      }))
    }),
}

export const bucketNoPublicGrant: Control = {
  id: 'bucket-no-public-grant',
  requirement: 'R5, R13, R14',
  holds:
    'ACLs are disabled, no website hosting, and no bucket policy allows anyone; the recordings bucket policy allows nothing at all',
  check: (f) =>
    eachBucket(f, (id, p) => {
      const problems: Problem[] = []
      const ownership = list(obj(p.OwnershipControls).Rules).map((r) => obj(r).ObjectOwnership)
      if (!ownership.includes('BucketOwnerEnforced'))
        problems.push({ path: `${id}.OwnershipControls`, message: 'must be BucketOwnerEnforced (ACLs disabled)' })
      if (p.AccessControl !== undefined && p.AccessControl !== 'Private')
        problems.push({ path: `${id}.AccessControl`, message: `${render(p.AccessControl)} exposes objects; remove it` })
      if (p.WebsiteConfiguration !== undefined)
        problems.push({
          path: `${id}.WebsiteConfiguration`,
          message: 'website hosting serves objects without authentication; remove it',
        })
      for (const [s, path] of statements(f, id)) {
        if (s.Effect !== 'Allow') continue
        if (anyone(s.Principal))
          problems.push({ path, message: `allows anyone (Principal "*") ${list(s.Action).map(render).join(', ')}` })
        else if (id === f.recordings)
          problems.push({
            path,
            message: 'the recordings bucket policy may only deny: access goes through the task role and presigned URLs',
          })
      }
      return problems
    }),
}

function deniesPlaintext(s: JsonObject, bucket: string): boolean {
  const actions = list(s.Action).map(render)
  const resources = list(s.Resource).map(render)
  const secure = obj(obj(s.Condition).Bool)['aws:SecureTransport']
  return (
    s.Effect === 'Deny' &&
    anyone(s.Principal) &&
    (actions.includes('s3:*') || actions.includes('*')) &&
    resources.includes(`<${bucket}.Arn>`) &&
    resources.includes(`<${bucket}.Arn>/*`) &&
    (secure === 'false' || secure === false)
  )
}

export const bucketTlsOnly: Control = {
  id: 'bucket-tls-only',
  requirement: 'R14',
  holds: 'every bucket policy denies each request made without TLS (aws:SecureTransport = false)',
  check: (f) =>
    eachBucket(f, (id) =>
      statements(f, id).some(([s]) => deniesPlaintext(s, id))
        ? []
        : [
            {
              path: id,
              message:
                'no bucket policy statement denies Principal "*" every s3 action on the bucket and its objects when aws:SecureTransport is false',
            },
          ],
    ),
}

export const bucketSseKms: Control = {
  id: 'bucket-sse-kms',
  requirement: 'R12',
  holds:
    'the recordings bucket encrypts by default with SSE-KMS under a rotating customer key, and kennel presigns uploads with that key',
  check: (f) =>
    recordingsBucket(f, (id, p) => {
      const rule = obj(list(obj(p.BucketEncryption).ServerSideEncryptionConfiguration)[0])
      const sse = obj(rule.ServerSideEncryptionByDefault)
      if (sse.SSEAlgorithm !== 'aws:kms')
        return [
          {
            path: `${id}.BucketEncryption`,
            message: `default encryption is ${render(sse.SSEAlgorithm ?? 'none')}; must be aws:kms with a customer key`,
          },
        ]
      const key = target(sse.KMSMasterKeyID)
      if (key === undefined || f.template.Resources?.[key]?.Type !== 'AWS::KMS::Key')
        return [
          { path: `${id}.BucketEncryption`, message: 'KMSMasterKeyID must be a customer KMS key of this template' },
        ]
      const problems: Problem[] =
        props(f.template.Resources[key]).EnableKeyRotation === true
          ? []
          : [{ path: `${key}.EnableKeyRotation`, message: 'must be true' }]
      // the S3 adapter sends this key id in every presigned PUT; without it uploads fall back to SSE-S3
      for (const c of f.kennel) {
        const keyId = settingOf(c, 'KENNEL_S3_KMS_KEY_ID')
        if (keyId !== `<${key}.Arn>`)
          problems.push({
            path: `${c.path}.KENNEL_S3_KMS_KEY_ID`,
            message: `must be the bucket key's ARN <${key}.Arn> (got ${keyId ?? 'nothing'})`,
          })
      }
      return problems
    }),
}

export const bucketVersioning: Control = {
  id: 'bucket-versioning',
  requirement: 'R14',
  holds:
    'the recordings bucket keeps versions, so an overwritten or deleted recording can be restored within the recovery window',
  check: (f) =>
    recordingsBucket(f, (id, p) =>
      obj(p.VersioningConfiguration).Status === 'Enabled'
        ? []
        : [{ path: `${id}.VersioningConfiguration`, message: 'must be Enabled' }],
    ),
}

export const bucketAccessLogging: Control = {
  id: 'bucket-access-logging',
  requirement: 'R14, R19',
  holds: 'every request to the recordings bucket is logged to a separate bucket (itself private, TLS only)',
  check: (f) =>
    recordingsBucket(f, (id, p) => {
      const dest = target(obj(p.LoggingConfiguration).DestinationBucketName)
      if (dest === undefined || f.template.Resources?.[dest]?.Type !== 'AWS::S3::Bucket')
        return [
          { path: `${id}.LoggingConfiguration`, message: 'server access logging must go to a bucket of this template' },
        ]
      return dest === id
        ? [{ path: `${id}.LoggingConfiguration`, message: 'logs into itself; use a separate bucket' }]
        : []
    }),
}

export const recordingsRetention: Control = {
  id: 'recordings-retention',
  requirement: 'R14',
  holds:
    "the recordings bucket's lifecycle deletes recordings after KENNEL_RETENTION_RECORDINGS_DAYS (the number kennel's own retention job uses) and their old versions after the recovery window",
  check: (f) =>
    recordingsBucket(f, (id, p) => {
      const days = new Set(f.kennel.map((c) => settingOf(c, 'KENNEL_RETENTION_RECORDINGS_DAYS')))
      const problems: Problem[] = []
      if (days.size !== 1 || [...days][0] === undefined)
        return [
          {
            path: 'KENNEL_RETENTION_RECORDINGS_DAYS',
            message: `every kennel container must set the same value (got ${[...days].map(String).join(', ')})`,
          },
        ]
      const want = Number([...days][0])
      // a rule with a prefix or tag filter would leave other objects forever
      const rules = list(obj(p.LifecycleConfiguration).Rules)
        .map(obj)
        .filter(
          (r) =>
            r.Status === 'Enabled' && r.Prefix === undefined && r.TagFilters === undefined && r.Filter === undefined,
        )
      const expiring = rules.filter((r) => r.ExpirationInDays !== undefined)
      if (expiring.length === 0 || expiring.some((r) => Number(r.ExpirationInDays) !== want)) {
        problems.push({
          path: `${id}.LifecycleConfiguration`,
          message: `whole-bucket expiration must be exactly ${want} days (KENNEL_RETENTION_RECORDINGS_DAYS); found ${expiring.map((r) => r.ExpirationInDays).join(', ') || 'none'}`,
        })
      }
      if (
        !rules.some(
          (r) => r.NoncurrentVersionExpiration !== undefined || r.NoncurrentVersionExpirationInDays !== undefined,
        )
      ) {
        problems.push({
          path: `${id}.LifecycleConfiguration`,
          message: 'noncurrent versions never expire: a deleted recording would be kept for ever',
        })
      }
      return problems
    }),
}
