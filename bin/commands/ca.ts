import { X509Certificate } from 'node:crypto'
import type { Command } from 'commander'
import { loadDeviceCa, rolloverDevelopmentCa } from '../../devices/ca.ts'
import { buildCrl } from '../../devices/crl.ts'
import { recordCa } from '../../devices/device-store.ts'
import { readRegistry } from '../../devices/registry.ts'
import { KennelError } from '../../infra/errors.ts'
import { action, withStore, writeOutput } from '../context.ts'

export function registerCaCommands(program: Command): void {
  const ca = program.command('ca').description('the device CA: CRL export, certificates, rollover')

  ca.command('crl')
    .description('write a signed X.509 CRL of every revoked device certificate (PEM, label X509 CRL)')
    .requiredOption('--out <file>', 'where to write the CRL')
    .option('--days <n>', 'days until nextUpdate (OpenSSL rejects every client once it has passed)', '7')
    .action(
      action(async (opts: { out: string; days: string }) => {
        const days = Number(opts.days)
        if (!Number.isSafeInteger(days) || days < 1 || days > 365)
          throw new KennelError('KENNEL_ERR_VALIDATION', `--days must be an integer 1-365 (got ${opts.days})`)
        await withStore(async ({ config, store }) => {
          const deviceCa = await loadDeviceCa(config)
          writeOutput(await buildCrl(deviceCa, await readRegistry(store), new Date(), days), opts.out)
          process.stdout.write(`CRL written to ${opts.out} (next update in ${days} days)\n`)
        })
      }),
    )

  ca.command('cert')
    .description(
      "print every trusted CA certificate (PEM): the device CAs and their root, which is what a toy's ca.crt holds",
    )
    .option(
      '--json',
      'one JSON object per certificate and line: subject, issuer, validity, SHA-256 fingerprint and PEM',
    )
    .action(
      action(async (opts: { json?: boolean }) => {
        await withStore(async ({ config }) => {
          const pem = (await loadDeviceCa(config)).trustedPem
          if (!opts.json) return void process.stdout.write(pem)
          for (const block of pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []) {
            const c = new X509Certificate(block)
            process.stdout.write(
              `${JSON.stringify({ subject: c.subject, issuer: c.issuer, notBefore: new Date(c.validFrom).toISOString(), notAfter: new Date(c.validTo).toISOString(), sha256: c.fingerprint256, pem: `${block}\n` })}\n`,
            )
          }
        })
      }),
    )

  ca.command('rollover')
    .description(
      'development: create a new device CA under the same root that issues from now on; certificates of the old one stay valid until they expire, the server certificate stays, and a running kennel picks the new CA up without a restart (R18)',
    )
    .action(
      action(async () => {
        await withStore(async ({ config, store, actor }) => {
          const next = await rolloverDevelopmentCa(config)
          await recordCa(store, next, actor)
          process.stdout.write(
            `new issuing CA ${next.issuer.info.caId} (${next.issuer.info.subject}); ${next.previousIssuers.length} previous CA(s) stay trusted; ` +
              `the server certificate is still issued by ${next.serverIssuer.info.caId}, which every toy trusts; running kennel processes pick the new CA up\n`,
          )
        })
      }),
    )
}
