import { Command } from 'commander'
import { loadConfig } from '../infra/config.ts'
import { createLogger } from '../infra/log.ts'
import { registerAccountCommands } from './commands/account.ts'
import { registerAuditCommands } from './commands/audit.ts'
import { registerCaCommands } from './commands/ca.ts'
import { registerDemoCommand } from './commands/demo.ts'
import { registerDeployCommands } from './commands/deploy.ts'
import { registerDeviceCommands } from './commands/device.ts'
import { registerEventCommands } from './commands/events.ts'
import { registerProjectionCommands } from './commands/projections.ts'
import { registerSimulateCommand } from './commands/simulate.ts'
import { registerCompletionCommand } from './commands/completion.ts'
import { action, exitOnUsageError } from './context.ts'
import { kennelVersion } from './version.ts'

const program = new Command()
  .name('kennel')
  .description('the secure, event-sourced backend for internet-connected toys')
  .version(kennelVersion(), '-V, --version', 'print the version of kennel')
  .showHelpAfterError()
  // before the commands are added: they inherit it
  .exitOverride(exitOnUsageError)

program
  .command('start')
  .description('run kennel on the configured (by default embedded) infrastructure')
  .action(
    action(async () => {
      const config = loadConfig()
      const log = createLogger(config.logLevel)
      // loaded here, not at the top: other commands need neither the broker nor the API
      const { startKennel } = await import('./start.ts')
      const kennel = await startKennel(config, log)
      process.stderr.write(nextSteps(kennel.ports, config.dataDir, config.metricsHost))
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
registerDemoCommand(program)
registerSimulateCommand(program)
registerCompletionCommand(program)

function nextSteps(
  ports: { mqtt?: number; api?: number; metrics?: number },
  dataDir: string,
  metricsHost: string,
): string {
  const ops = `http://${metricsHost.includes(':') ? `[${metricsHost}]` : metricsHost}:${ports.metrics}`
  const lines = [
    '',
    `kennel is running (data in ${dataDir}).`,
    ports.mqtt !== undefined ? `  MQTT over mutual TLS: mqtts://localhost:${ports.mqtt}` : undefined,
    ports.api !== undefined ? `  HTTPS API:           https://localhost:${ports.api}  (OpenAPI at /docs)` : undefined,
    ports.metrics !== undefined ? `  metrics, health:     ${ops}/metrics  ${ops}/healthz  ${ops}/readyz` : undefined,
    'Next:',
    `  npx kennel device enroll toy-1 --out ./toy-1   give a toy its key, certificate and claim code`,
    `  mosquitto_sub -h localhost -p ${ports.mqtt ?? 8883} --cafile ./toy-1/ca.crt --cert ./toy-1/device.crt --key ./toy-1/device.key -i toy-1 -t 'toys/toy-1/#'`,
    '  npx kennel demo                                a scripted tour: toys, a parent, an attack, a revocation',
    '  npx kennel events tail -f                      watch every event as it happens',
    '  npx kennel --help                              everything else',
    'Stop with Ctrl-C.',
    '',
  ]
  return lines.filter((l) => l !== undefined).join('\n')
}

await program.parseAsync(process.argv)
