import { RECORDINGS_PREFIX } from '../container.ts'
import { list, obj, ofType, props, render, target, type Json, type JsonObject } from '../template.ts'
import type { Control, Facts, Problem } from './facts.ts'

// R5, R14: the role kennel's tasks run as can do three things to recordings (get, put, delete,
// under the recordings prefix) with the recordings key, through S3 only: enough to presign
// uploads and downloads, check a completed upload and delete expired recordings. A leaked task
// credential then reaches recordings one known key at a time, never the bucket listing, another
// bucket or another key; and no other role of the stack touches S3 or KMS at all.

export const OBJECT_ACTIONS = ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']
export const KEY_ACTIONS = ['kms:GenerateDataKey', 'kms:Decrypt']

interface Statement {
  s: JsonObject
  path: string
}

/** every policy statement that applies to a role: inline, attached policies, managed policies */
function statementsOf(f: Facts, role: string): Statement[] {
  const own = list(props(f.template.Resources?.[role]).Policies).flatMap((p, i) =>
    list(obj(obj(p).PolicyDocument).Statement).map((s, j) => ({
      s: obj(s),
      path: `${role}.Policies[${i}].Statement[${j}]`,
    })),
  )
  const attached = [...ofType(f.template, 'AWS::IAM::Policy'), ...ofType(f.template, 'AWS::IAM::ManagedPolicy')]
    .filter(([, p]) => list(p.Roles).some((r) => target(r) === role))
    .flatMap(([id, p]) =>
      list(obj(p.PolicyDocument).Statement).map((s, j) => ({
        s: obj(s),
        path: `${id}.PolicyDocument.Statement[${j}]`,
      })),
    )
  return [...own, ...attached]
}

const actionsOf = (s: JsonObject): string[] => list(s.Action).map(render)

/** the key that encrypts the recordings bucket */
function recordingsKey(f: Facts): string | undefined {
  const p = props(f.recordings === undefined ? undefined : f.template.Resources?.[f.recordings])
  const sse = obj(obj(list(obj(p.BucketEncryption).ServerSideEncryptionConfiguration)[0]).ServerSideEncryptionByDefault)
  return target(sse.KMSMasterKeyID)
}

const viaS3 = (s: JsonObject): boolean =>
  /^s3\.(<AWS::Region>|[a-z0-9-]+)\.amazonaws\.com$/.test(
    render(obj(obj(s.Condition).StringEquals)['kms:ViaService'] as Json | undefined),
  )

/** a trust principal that is exactly the ECS tasks service (no account, no "*") */
function onlyEcsTasks(principal: Json | undefined): boolean {
  const p = obj(principal)
  const services = list(p.Service)
  return Object.keys(p).length === 1 && services.length > 0 && services.every((x) => x === 'ecs-tasks.amazonaws.com')
}

function taskRoleProblems(f: Facts, role: string, objects: string, key: string | undefined): Problem[] {
  const problems: Problem[] = []
  const granted = new Set<string>()
  const p = props(f.template.Resources?.[role])
  if (p.ManagedPolicyArns !== undefined)
    problems.push({
      path: `${role}.ManagedPolicyArns`,
      message: 'managed policies grant what this check cannot see; use the statements below only',
    })
  const trust = list(obj(p.AssumeRolePolicyDocument).Statement).map(obj)
  if (!trust.every((s) => s.Effect !== 'Allow' || onlyEcsTasks(s.Principal))) {
    problems.push({
      path: `${role}.AssumeRolePolicyDocument`,
      message: 'only ecs-tasks.amazonaws.com may assume the task role',
    })
  }
  for (const { s, path } of statementsOf(f, role)) {
    if (s.Effect !== 'Allow') continue
    if (s.NotAction !== undefined || s.NotResource !== undefined)
      problems.push({ path, message: 'NotAction/NotResource grant everything not listed; name actions and resources' })
    const resources = list(s.Resource).map(render)
    for (const action of actionsOf(s)) {
      const object = OBJECT_ACTIONS.includes(action)
      if (!object && !KEY_ACTIONS.includes(action)) {
        problems.push({
          path,
          message: `${action} is not needed for recordings${action.includes('*') ? ' (wildcard action)' : ''}`,
        })
        continue
      }
      const want = object ? objects : key === undefined ? '(the recordings key)' : `<${key}.Arn>`
      const wrong = resources.filter((r) => r !== want)
      if (wrong.length > 0 || resources.length === 0)
        problems.push({ path, message: `${action} on ${wrong.join(', ') || 'no resource'}; only ${want} is allowed` })
      else if (!object && !viaS3(s))
        problems.push({
          path,
          message: `${action} without the kms:ViaService = s3.<region>.amazonaws.com condition: the key must be usable only through S3`,
        })
      else granted.add(action)
    }
  }
  const missing = [...OBJECT_ACTIONS, ...KEY_ACTIONS].filter((a) => !granted.has(a))
  if (missing.length > 0)
    problems.push({
      path: role,
      message: `missing ${missing.join(', ')}: presigned URLs or retention deletes would be refused`,
    })
  return problems
}

export const taskRoleLeastPrivilege: Control = {
  id: 'task-role-least-privilege',
  requirement: 'R5, R14',
  holds: `kennel's task role may only s3:GetObject/PutObject/DeleteObject on <recordings>/${RECORDINGS_PREFIX}* and kms:GenerateDataKey/Decrypt on the recordings key via S3; no other role touches S3 or KMS`,
  check: (f) => {
    if (f.recordings === undefined)
      return [
        { path: 'KENNEL_S3_BUCKET', message: 'the kennel containers do not all name one S3 bucket of this template' },
      ]
    const objects = `<${f.recordings}.Arn>/${RECORDINGS_PREFIX}*`
    const key = recordingsKey(f)
    const problems: Problem[] =
      f.taskRoles.size === 0
        ? [{ path: 'TaskRoleArn', message: 'the kennel task definitions have no task role of this template' }]
        : []
    for (const role of f.taskRoles) problems.push(...taskRoleProblems(f, role, objects, key))
    for (const [role] of ofType(f.template, 'AWS::IAM::Role')) {
      if (f.taskRoles.has(role)) continue
      for (const { s, path } of statementsOf(f, role)) {
        const reach = actionsOf(s).filter((a) => /^(s3|kms):|^\*$/.test(a))
        if (s.Effect === 'Allow' && (reach.length > 0 || s.NotAction !== undefined))
          problems.push({
            path,
            message: `${reach.join(', ') || 'NotAction'} on role ${role}: only the kennel task role may act on S3 or KMS`,
          })
      }
    }
    return problems
  },
}
