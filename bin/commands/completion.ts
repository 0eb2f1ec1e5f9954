import { Argument, type Command } from 'commander'
import { completionScript, type Shell, SHELLS } from '../completion.ts'

export function registerCompletionCommand(program: Command): void {
  program
    .command('completion')
    .description(
      `print a shell completion script (${SHELLS.join(', ')}); load it with: source <(kennel completion bash)`,
    )
    .addArgument(new Argument('<shell>', 'the shell to complete for').choices(SHELLS))
    .action((shell: Shell) => void process.stdout.write(completionScript(program, shell)))
}
