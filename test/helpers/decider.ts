import type { Test } from 'tap'
import type { Decider, DomainEvent } from '../../infra/eventstore/command.ts'
import type { ErrorCode } from '../../infra/errors.ts'

/** A decider's tests as given (past events) / when (a command) / then (the new events, or the
 * refusal's code): pure, no store. */
export function given<Command, State, Event extends DomainEvent>(
  decider: Decider<Command, State, Event>,
  events: readonly Event[],
) {
  const state = events.reduce(decider.evolve, decider.initialState)
  return {
    when: (command: Command) => ({
      // biome-ignore lint/suspicious/noThenProperty: given/when/then, never awaited
      then: (t: Test, expected: Event[]) => t.same(decider.decide(command, state), expected),
      refused: (t: Test, code: ErrorCode) => t.throws(() => decider.decide(command, state), { code }, code),
    }),
  }
}
