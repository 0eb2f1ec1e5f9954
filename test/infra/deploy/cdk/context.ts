import type { Test } from 'tap'
import { configKeys, loadConfig } from '../../../../infra/config.ts'
import { buildApp, stackProps } from '../../../../infra/deploy/cdk/synth.ts'
import { CONTEXT } from './synthesized.ts'

// Context values: defaults, refusals, and KENNEL_RETENTION_RECORDINGS_DAYS reaching both the
// bucket's lifecycle rule and every kennel container from the one value.

/** an L1 resource's properties */
const l1 = <T>(c: { node: { defaultChild?: unknown } }): T => c.node.defaultChild as T

export function contextChecks(t: Test): void {
  t.test('context defaults: 365 days of retention, 30 days to restore a version, two tasks per service', async (t) => {
    const props = stackProps(CONTEXT)
    t.match(props, {
      retentionDays: 365,
      recoveryDays: 30,
      brokerTasks: 2,
      apiTasks: 2,
      secretsPrefix: 'kennel/production/',
      stackName: 'KennelProduction',
    })
    t.equal(
      props.retentionDays,
      loadConfig({}).retentionRecordingsDays,
      `the bucket's default lifecycle is kennel's own ${configKeys.retentionRecordingsDays.env} default (R12)`,
    )
  })

  t.test('bad context values stop the synthesis with KENNEL_ERR_DEPLOY_DEFINITION naming the key', async (t) => {
    const cases: Array<[Record<string, string | undefined>, RegExp]> = [
      [{ ...CONTEXT, image: undefined }, /context image must be the kennel container image/],
      [{ ...CONTEXT, securityContact: undefined }, /context securityContact must be/],
      [
        { ...CONTEXT, securityContact: 'security@kennel.example' },
        /context securityContact must be a mailto: or https: URI/,
      ],
      [{ ...CONTEXT, retentionDays: '0' }, /context retentionDays must be an integer 1-36500 \(got "0"\)/],
      [{ ...CONTEXT, retentionDays: '30d' }, /context retentionDays must be an integer/],
      [{ ...CONTEXT, alertWebhook: 'http://alerts.example' }, /context alertWebhook must be an https: URL/],
      [
        { ...CONTEXT, publicUrl: undefined },
        /context publicUrl must be the https origin clients reach the load balancer at/,
      ],
      [
        { ...CONTEXT, publicUrl: 'http://api.kennel.example' },
        /context publicUrl must be an https URL with no path, query or fragment/,
      ],
      [
        { ...CONTEXT, publicUrl: 'https://api.kennel.example/v1' },
        /context publicUrl must be an https URL with no path/,
      ],
      [{ ...CONTEXT, mailFrom: undefined }, /context mailFrom must be the sender of sign-up confirmations/],
      [
        { ...CONTEXT, mailFrom: 'kennel <no-reply@kennel.example>\r\nBcc: all@kennel.example' },
        /context mailFrom must be one address/,
      ],
      [
        { ...CONTEXT, mailFrom: 'kennel <no-reply@kennel.invalid>' },
        /context mailFrom must be the operator's own sender address, not kennel's default/,
      ],
    ]
    for (const [context, message] of cases)
      t.throws(() => stackProps(context), { code: 'KENNEL_ERR_DEPLOY_DEFINITION', message }, String(message))
  })

  t.test("publicUrl is normalized to an origin by kennel's own parser", async (t) => {
    t.equal(
      stackProps({ ...CONTEXT, publicUrl: ' https://API.kennel.example:443/ ' }).publicUrl,
      'https://api.kennel.example',
    )
  })

  t.test('retentionDays sets the lifecycle rule and KENNEL_RETENTION_RECORDINGS_DAYS together', async (t) => {
    const { stack } = buildApp({ ...CONTEXT, retentionDays: '30', recoveryDays: '7' })
    const bucket = l1<{ lifecycleConfiguration: unknown }>(stack.recordings)
    t.match(stack.resolve(bucket.lifecycleConfiguration), {
      rules: [{ expirationInDays: 30, noncurrentVersionExpiration: { noncurrentDays: 7 } }],
    })
    for (const service of stack.services) {
      const task = l1<{ containerDefinitions: unknown }>(service.taskDefinition)
      const [container] = stack.resolve(task.containerDefinitions) as Array<{
        environment: Array<{ name: string; value: unknown }>
      }>
      t.equal(container!.environment.find((e) => e.name === 'KENNEL_RETENTION_RECORDINGS_DAYS')?.value, '30')
    }
  })
}
