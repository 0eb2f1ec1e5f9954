import type { Test } from 'tap'
import { acknowledgements, nagErrors } from '../../../../infra/deploy/cdk/nag.ts'
import { KennelStack } from '../../../../infra/deploy/cdk/stack.ts'
import { buildApp, newApp, stackProps } from '../../../../infra/deploy/cdk/synth.ts'
import { CONTEXT, type Synthesized } from './synthesized.ts'

// cdk-nag's AwsSolutions pack over the production stack: no error unless acknowledged, each
// acknowledgement needed and given its own reason; and a deliberately weakened stack is caught.

/** an L1 resource's properties, as cdk-nag reads them (escape hatch: what a careless edit would change) */
const l1 = (c: { node: { defaultChild?: unknown } }) => c.node.defaultChild as Record<string, unknown>

export function nagChecks(t: Test, s: Synthesized): void {
  t.test('cdk-nag AwsSolutions reports no unacknowledged error on the production stack', async (t) => {
    t.same(nagErrors(s.stack), [])
  })

  t.test('every acknowledgement is needed and gives its own specific reason', async (t) => {
    const acks = acknowledgements(s.stack)
    t.ok(acks.length >= 8, `${acks.length} acknowledgements`)
    for (const a of acks) t.ok(a.reason.length >= 80, `${a.id} on ${a.path} says why (${a.reason.length} characters)`)
    t.equal(
      new Set(acks.map((a) => a.reason)).size,
      new Set(acks.map((a) => `${a.id} ${a.reason}`)).size,
      'no reason is reused for another rule',
    )
    // the same stack without acknowledgements: each acknowledged finding must really be raised there, and nothing else
    const bare = new KennelStack(newApp(), 'Unacknowledged', stackProps(CONTEXT))
    const raised = nagErrors(bare).map((e) => ({
      rule: e.rule,
      path: e.path.replace(/^Unacknowledged\//, `${s.stack.stackName}/`),
    }))
    for (const a of acks)
      t.ok(
        raised.some((e) => e.rule === a.id && (e.path === a.path || e.path.startsWith(`${a.path}/`))),
        `${a.id} on ${a.path} answers a finding`,
      )
    for (const e of raised)
      t.ok(
        acks.some((a) => a.id === e.rule && (e.path === a.path || e.path.startsWith(`${a.path}/`))),
        `${e.rule} on ${e.path} is acknowledged`,
      )
  })

  t.test(
    'a weakened stack: cdk-nag reports the plaintext bucket policy, the unencrypted database and the broad task role',
    async (t) => {
      const { stack } = buildApp(CONTEXT, newApp())
      l1(stack.recordings.policy!).policyDocument = { Statement: [] }
      l1(stack.database).storageEncrypted = false
      l1(stack.taskRole.node.findChild('DefaultPolicy')).policyDocument = {
        Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: stack.resolve(stack.recordings.arnForObjects('*')) }],
      }
      const rules = new Set(nagErrors(stack).map((e) => e.rule))
      t.ok(rules.has('AwsSolutions-S10'), 'S10: requests without TLS allowed')
      t.ok(rules.has('AwsSolutions-RDS2'), 'RDS2: storage not encrypted')
      t.ok(rules.has('AwsSolutions-IAM5[Action::s3:*]'), 'IAM5: s3:*')
      t.ok(
        [...rules].some((r) => /^AwsSolutions-IAM5\[Resource::<Recordings\w+\.Arn>\/\*\]$/.test(r)),
        'IAM5: the whole bucket',
      )
    },
  )
}
