import type { Command } from 'commander'
import { KennelError } from '../../infra/errors.ts'
import { action, withStore } from '../context.ts'
import { eventTypes, isEventType } from '../event-types.ts'

export function registerEventCommands(program: Command): void {
  const events = program.command('events').description('read the event history')
  events
    .command('tail')
    .description('print the newest events as JSON lines')
    .option('-n, --lines <n>', 'how many of the newest events to print first', '20')
    .option('-f, --follow', 'keep printing new events as they are appended')
    .option('--stream <prefix>', 'only events whose stream starts with this prefix')
    .option('--type <type...>', 'only events of these types (an unknown type is refused with the list of known ones)')
    .option('--json', 'JSON (the only format of this command; accepted so every command that reads takes --json)')
    .action(
      action(async (opts: { lines: string; follow?: boolean; stream?: string; type?: string[] }) => {
        const n = Number(opts.lines)
        if (!Number.isSafeInteger(n) || n < 0)
          throw new KennelError('KENNEL_ERR_VALIDATION', `--lines must be a non-negative integer (got ${opts.lines})`)
        // a misspelt type would match nothing and print nothing, for ever with --follow
        const unknown = (opts.type ?? []).filter((type) => !isEventType(type))
        if (unknown.length > 0)
          throw new KennelError(
            'KENNEL_ERR_VALIDATION',
            `unknown event type ${unknown.join(', ')} (--type); known types: ${eventTypes.join(', ')}`,
          )
        const filter = { streamPrefixes: opts.stream ? [opts.stream] : undefined, types: opts.type }
        await withStore(async ({ store }) => {
          const newest = n === 0 ? [] : await store.readAll({ direction: 'backwards', maxCount: n, filter })
          for (const e of newest.reverse()) process.stdout.write(`${JSON.stringify(e)}\n`)
          if (!opts.follow) return
          const after = newest.at(-1)?.position ?? (await store.headPosition())
          const sub = store.subscribe({
            after,
            filter,
            onEvent: (e) => void process.stdout.write(`${JSON.stringify(e)}\n`),
          })
          await new Promise<void>((resolve) => {
            process.once('SIGINT', resolve)
            process.once('SIGTERM', resolve)
          })
          await sub.stop()
        })
      }),
    )
}
