import cliProgress from 'cli-progress'
import type { Command } from 'commander'
import { auditSigner, openKennelReadModels } from '../../projections/catalogue.ts'
import { persistentProjectionNames, persistentProjections } from '../read-models.ts'
import { projectorLag } from '../../projections/lag.ts'
import { rebuildProjections } from '../../projections/rebuild.ts'
import { action, withStore } from '../context.ts'

/** a progress bar on stderr: events done, rate, ETA */
export function progressBar(label: string): { update(done: number, total: number): void; stop(): void } {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} |{bar}| {value}/{total} events | {rate} events/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      noTTYOutput: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  )
  const started = performance.now()
  let running = false
  return {
    update(done, total) {
      const rate = Math.round(done / Math.max((performance.now() - started) / 1000, 0.001))
      if (!running) bar.start(total, done, { rate }), (running = true)
      else bar.update(done, { rate })
    },
    stop: () => running && bar.stop(),
  }
}

export function registerProjectionCommands(program: Command): void {
  const projections = program.command('projections').description('read models built from the event stream')
  projections
    .command('rebuild [name]')
    .description("forget a projection's read model (default: all) and rebuild it from the first event")
    .action(
      action(async (name: string | undefined) => {
        await withStore(async ({ config, store }) => {
          const readModels = await openKennelReadModels(config)
          const bar = progressBar('rebuild')
          try {
            const result = await rebuildProjections({
              store,
              readModels,
              projections: persistentProjections(config, auditSigner(config)),
              names: name ? [name] : undefined,
              onProgress: (position, head) => bar.update(Math.min(position, head), head),
            })
            bar.stop()
            process.stderr.write(
              `rebuilt ${result.projections.join(', ')} up to position ${result.head} in ${result.seconds.toFixed(1)} s\n`,
            )
          } finally {
            bar.stop()
            await readModels.close()
          }
        })
      }),
    )

  projections
    .command('status')
    .description("each read model's stored checkpoint and how many events of the store it has not applied yet")
    .option('--json', 'print the status as one JSON object')
    .action(
      action(async (opts: { json?: boolean }) => {
        await withStore(async ({ config, store }) => {
          const readModels = await openKennelReadModels(config)
          try {
            const lag = await projectorLag(store, readModels, persistentProjectionNames())
            if (opts.json) return void process.stdout.write(`${JSON.stringify(lag)}\n`)
            const width = Math.max(...lag.projections.map((p) => p.name.length))
            process.stdout.write(`event store head: ${lag.head}\n`)
            for (const p of lag.projections)
              process.stdout.write(
                `  ${p.name.padEnd(width)}  at ${p.position}${p.behind > 0 ? `, ${p.behind} behind` : ', caught up'}\n`,
              )
          } finally {
            await readModels.close()
          }
        })
      }),
    )
}
