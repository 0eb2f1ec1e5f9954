import { Command } from 'commander'
import { loadConfig } from '../infra/config.ts'
import { createLogger } from '../infra/log.ts'
import { registerAccountCommands } from './commands/account.ts'
import { registerAuditCommands } from './commands/audit.ts'
import { registerCaCommands } from './commands/ca.ts'
import { registerDeployCommands } from './commands/deploy.ts'
import { registerDeviceCommands } from './commands/device.ts'
import { registerEventCommands } from './commands/events.ts'
import { registerProjectionCommands } from './commands/projections.ts'
import { action } from './context.ts'
import { startKennel } from './start.ts'

const program = new Command()
  .name('kennel')
  .description('the secure, event-sourced backend for internet-connected toys')
  .showHelpAfterError()

program
  .command('start')
  .description('run kennel on the configured (by default embedded) infrastructure')
  .action(
    action(async () => {
      const config = loadConfig()
      const log = createLogger(config.logLevel)
      const kennel = await startKennel(config, log)
      process.stderr.write(nextSteps(kennel.ports, config.dataDir))
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      log.info('shutting down')
      await kennel.stop()
    }),
  )

registerEventCommands(program)
registerDeviceCommands(program)
registerDeployCommands(program)
registerCaCommands(program)
registerAccountCommands(program)
registerProjectionCommands(program)
registerAuditCommands(program)

function nextSteps(ports: { mqtt?: number; api?: number; metrics?: number }, dataDir: string): string {
  const lines = [
    '',
    `kennel is running (data in ${dataDir}).`,
    ports.mqtt !== undefined ? `  MQTT over mutual TLS: mqtts://localhost:${ports.mqtt}` : undefined,
    ports.api !== undefined ? `  HTTPS API:           https://localhost:${ports.api}  (OpenAPI at /docs)` : undefined,
    ports.metrics !== undefined ? `  metrics:             http://127.0.0.1:${ports.metrics}/metrics` : undefined,
    'Next:',
    '  npx kennel events tail -f                      watch every event as it happens',
    '  npx kennel --help                              everything else',
    'Stop with Ctrl-C.',
    '',
  ]
  return lines.filter((l) => l !== undefined).join('\n')
}

await program.parseAsync(process.argv)
