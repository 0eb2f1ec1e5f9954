import { Template } from '../../../../infra/deploy/cdk/assertions.ts'
import { buildApp, templateOf } from '../../../../infra/deploy/cdk/synth.ts'
import type { KennelStack } from '../../../../infra/deploy/cdk/stack.ts'
import type { CfnTemplate } from '../../../../infra/deploy/cdk/template.ts'

// The production stack as an operator would deploy it (an image in the account's ECR, a real
// security contact, every other context value at its default), synthesized once per test file.

export const CONTEXT = {
  image: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/kennel:1.0.0',
  securityContact: 'mailto:security@kennel.example',
  publicUrl: 'https://api.kennel.example',
  mailFrom: 'kennel <no-reply@kennel.example>',
}

export interface Synthesized {
  app: ReturnType<typeof buildApp>['app']
  stack: KennelStack
  template: Template
  /** the raw template, for the controls and for mutations */
  json: CfnTemplate
}

export function synthesizeProduction(context: Record<string, string> = CONTEXT): Synthesized {
  const { app, stack } = buildApp(context)
  const json = templateOf(app, stack)
  return { app, stack, template: Template.fromJSON(json as Record<string, unknown>), json }
}

/** the logical id CloudFormation knows a construct's resource by */
export const idOf = (stack: KennelStack, construct: { node: { defaultChild?: unknown } }): string =>
  stack.getLogicalId(construct.node.defaultChild as Parameters<KennelStack['getLogicalId']>[0])
