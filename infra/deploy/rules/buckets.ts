import { anyone, byId, envText, items, many, type Bucket, type Definition, type Problem, type Rule, type Statement } from '../definition.ts'

// R5, R12, R14: the recordings bucket is never public, speaks only TLS, encrypts with a KMS key
// and keeps old versions. CloudPets' voice recordings were anonymously readable from S3.

function eachBucket(d: Definition, check: (b: Bucket, path: string) => Problem[]): Problem[] {
  return items(d.buckets, 'buckets').flatMap(([b, p]) => check(b, `buckets[${b.name ?? p}]`))
}

const statements = (b: Bucket, path: string): Array<[Statement, string]> => items(many(b.policy?.Statement), `${path}.policy.Statement`)

const FLAGS = ['blockPublicAcls', 'ignorePublicAcls', 'blockPublicPolicy', 'restrictPublicBuckets'] as const

export const bucketBlockPublicAccess: Rule = {
  id: 'bucket-block-public-access',
  requirement: 'R5, R14',
  prevents: 'recordings in a public S3 bucket',
  holds: 'all four Block Public Access settings are on, so no ACL or policy can make an object public',
  check: (d) =>
    eachBucket(d, (b, p) =>
      FLAGS.filter((f) => b.blockPublicAccess?.[f] !== true).map((f) => ({ path: `${p}.blockPublicAccess.${f}`, message: 'must be true' })),
    ),
}

export const bucketNoPublicAclOrPolicy: Rule = {
  id: 'bucket-no-public-acl-or-policy',
  requirement: 'R5, R13, R14',
  prevents: 'recordings anonymously retrievable by URL',
  holds: 'ACLs are disabled, no website hosting, and the bucket policy grants nothing (access only through the presigner role)',
  check: (d) =>
    eachBucket(d, (b, p) => {
      const problems: Problem[] = []
      if (b.objectOwnership !== 'BucketOwnerEnforced') problems.push({ path: `${p}.objectOwnership`, message: 'must be BucketOwnerEnforced (ACLs disabled)' })
      if (b.acl !== undefined && b.acl !== 'private') problems.push({ path: `${p}.acl`, message: `${b.acl} exposes objects; must be private` })
      if (b.website !== undefined && b.website !== null && b.website !== false) problems.push({ path: `${p}.website`, message: 'website hosting serves objects without authentication; remove it' })
      for (const [s, sp] of statements(b, p)) {
        if (s.Effect === 'Deny') continue
        const who = anyone(s.Principal) ? 'anyone (Principal "*")' : 'a principal'
        problems.push({ path: sp, message: `grants ${who} ${many(s.Action).join(', ') || 'access'}; the bucket policy may only deny` })
      }
      return problems
    }),
}

function deniesPlaintext(s: Statement, arn: string): boolean {
  const actions = many(s.Action)
  const resources = many(s.Resource)
  const secure = s.Condition?.Bool?.['aws:SecureTransport']
  return (
    s.Effect === 'Deny' && anyone(s.Principal) && (actions.includes('s3:*') || actions.includes('*')) &&
    resources.includes(arn) && resources.includes(`${arn}/*`) && (secure === 'false' || secure === false)
  )
}

export const bucketTlsOnlyPolicy: Rule = {
  id: 'bucket-tls-only-policy',
  requirement: 'R14',
  prevents: 'recordings fetched over plain HTTP',
  holds: 'the bucket policy denies every request made without TLS (aws:SecureTransport = false)',
  check: (d) =>
    eachBucket(d, (b, p) =>
      statements(b, p).some(([s]) => deniesPlaintext(s, b.arn ?? '')) ? [] : [{ path: `${p}.policy`, message: `no statement denies Principal "*" every s3 action on ${b.arn ?? '(no arn)'} and its objects when aws:SecureTransport is false` }],
    ),
}

export const bucketSseKms: Rule = {
  id: 'bucket-sse-kms',
  requirement: 'R12',
  prevents: 'recordings stored unencrypted',
  holds: 'default encryption is SSE-KMS with a rotating key, and kennel presigns uploads with that same key',
  check: (d) => {
    const problems = eachBucket(d, (b, p) => {
      const key = byId(d.kmsKeys, 'kmsKeys', b.encryption?.kmsKey)
      const out: Problem[] = b.encryption?.sseAlgorithm === 'aws:kms' ? [] : [{ path: `${p}.encryption.sseAlgorithm`, message: 'must be aws:kms' }]
      if (key?.arn === undefined) out.push({ path: `${p}.encryption.kmsKey`, message: 'must name a key (with an arn) in kmsKeys' })
      else if (key.rotation !== true) out.push({ path: `kmsKeys[${key.id}].rotation`, message: 'must be true' })
      return out
    })
    // the S3 adapter sends the key id in every presigned PUT; without it uploads fall back to SSE-S3
    for (const [s, sp] of items(d.services, 'services')) {
      const name = envText(s.environment?.KENNEL_S3_BUCKET)
      if (name === undefined) continue
      const bucket = items(d.buckets, 'buckets').find(([b]) => b.name === name)?.[0]
      const arn = byId(d.kmsKeys, 'kmsKeys', bucket?.encryption?.kmsKey)?.arn
      if (bucket === undefined) problems.push({ path: `${sp}.environment.KENNEL_S3_BUCKET`, message: `${name} is not a bucket of this definition` })
      else if (envText(s.environment?.KENNEL_S3_KMS_KEY_ID) !== arn) problems.push({ path: `${sp}.environment.KENNEL_S3_KMS_KEY_ID`, message: `must be the bucket's key ${arn ?? '(none)'}` })
    }
    return problems
  },
}

export const bucketVersioning: Rule = {
  id: 'bucket-versioning',
  requirement: 'R14',
  prevents: 'data wiped and held for ransom (the open MongoDB was, repeatedly)',
  holds: 'versioning is on, so an overwritten or deleted recording can be restored',
  check: (d) => eachBucket(d, (b, p) => (b.versioning === 'Enabled' ? [] : [{ path: `${p}.versioning`, message: 'must be Enabled' }])),
}
