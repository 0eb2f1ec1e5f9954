import type { Test } from 'tap'
import { cliChecks } from './cli.ts'
import { contextChecks } from './context.ts'
import { controlAttacks } from './controls.ts'
import { nagChecks } from './nag.ts'
import { stackAssertions } from './stack.ts'
import { synthesizeProduction } from './synthesized.ts'

/** every CDK suite over one synthesis of the production stack */
export function deploymentSuites(t: Test): void {
  const synthesized = synthesizeProduction()
  stackAssertions(t, synthesized)
  controlAttacks(t, synthesized)
  nagChecks(t, synthesized)
  contextChecks(t)
  cliChecks(t, synthesized)
}
