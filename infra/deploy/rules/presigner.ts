import { anyone, byId, envText, items, many, type Definition, type Problem, type Role, type Rule } from '../definition.ts'

// R5, R14: the role the kennel process runs as can presign exactly two things: putting and
// getting recording objects, with the one KMS key that encrypts them. A leaked task credential
// then reaches recordings one known key at a time — not the bucket listing, not other buckets.

/** every object key kennel writes starts with this (newObjectKey in infra/blobstore/port.ts; a test keeps them in step) */
export const OBJECT_KEY_PREFIX = 'rec-'

const S3_ACTIONS = ['s3:PutObject', 's3:GetObject']
const KMS_NEEDED = ['kms:GenerateDataKey', 'kms:Decrypt']
const KMS_ALLOWED = [...KMS_NEEDED, 'kms:Encrypt']

interface Target { objects: string; key: string | undefined }

function grants(role: Role, path: string, t: Target): { problems: Problem[]; granted: Set<string> } {
  const problems: Problem[] = []
  const granted = new Set<string>()
  for (const [s, sp] of items(many(role.policy?.Statement), `${path}.policy.Statement`)) {
    if (s.Effect !== 'Allow') continue
    if (s.NotAction !== undefined || s.NotResource !== undefined) problems.push({ path: sp, message: 'NotAction/NotResource grant everything not listed; name actions and resources' })
    const resources = many(s.Resource)
    if (resources.length === 0) problems.push({ path: sp, message: 'no Resource' })
    for (const action of many(s.Action)) {
      const s3 = S3_ACTIONS.includes(action), kms = KMS_ALLOWED.includes(action)
      if (!s3 && !kms) {
        problems.push({ path: sp, message: `${action} is not needed to presign recordings${action.includes('*') ? ' (wildcard action)' : ''}` })
        continue
      }
      const want = s3 ? t.objects : t.key
      for (const r of resources) {
        if (r === want) granted.add(action)
        else problems.push({ path: sp, message: `${action} on ${r}; only ${want ?? '(the bucket key)'} is allowed` })
      }
    }
  }
  return { problems, granted }
}

export const presignerLeastPrivilege: Rule = {
  id: 'presigner-least-privilege',
  requirement: 'R5, R14',
  prevents: 'recordings reachable with broad or anonymous credentials instead of short-lived presigned URLs',
  holds: `the task role allows only s3:PutObject/GetObject on <bucket>/${OBJECT_KEY_PREFIX}* and GenerateDataKey/Decrypt on the bucket's key; no other role touches S3 or KMS`,
  check: (d: Definition) => {
    const problems: Problem[] = []
    const presigners = new Set<string>()
    for (const [svc, sp] of items(d.services, 'services')) {
      const bucketName = envText(svc.environment?.KENNEL_S3_BUCKET)
      if (bucketName === undefined) continue
      const bucket = items(d.buckets, 'buckets').find(([b]) => b.name === bucketName)?.[0]
      const role = byId(d.iamRoles, 'iamRoles', svc.taskRole)
      if (bucket?.arn === undefined || role === undefined) {
        problems.push({ path: `${sp}.taskRole`, message: `needs a role in iamRoles and the bucket ${bucketName} with its arn` })
        continue
      }
      presigners.add(role.id ?? '')
      const rp = `iamRoles[${role.id}]`
      if (role.trust === undefined || anyone(role.trust.Principal) || role.trust.Principal === undefined) problems.push({ path: `${rp}.trust`, message: 'must name the one service principal that may assume the role, never "*"' })
      const target = { objects: `${bucket.arn}/${OBJECT_KEY_PREFIX}*`, key: byId(d.kmsKeys, 'kmsKeys', bucket.encryption?.kmsKey)?.arn }
      const { problems: found, granted } = grants(role, rp, target)
      problems.push(...found)
      const missing = [...S3_ACTIONS, ...KMS_NEEDED].filter((a) => !granted.has(a))
      if (missing.length > 0) problems.push({ path: `${rp}.policy`, message: `missing ${missing.join(', ')}: presigned URLs would be refused` })
    }
    for (const [role] of items(d.iamRoles, 'iamRoles')) {
      if (presigners.has(role.id ?? '')) continue
      for (const [s, sp] of items(many(role.policy?.Statement), `iamRoles[${role.id}].policy.Statement`)) {
        const reach = many(s.Action).filter((a) => /^(s3|kms):|^\*$/.test(a))
        if (s.Effect === 'Allow' && (reach.length > 0 || s.NotAction !== undefined)) problems.push({ path: sp, message: `${reach.join(', ') || 'NotAction'}: only the presigner role may act on S3 or KMS` })
      }
    }
    return problems
  },
}
