import type { Command } from 'commander'
import type { Config } from '../../infra/config.ts'
import { KennelError } from '../../infra/errors.ts'
import { readHeads } from '../../projections/audit/heads.ts'
import { findAuditSigner, verifierFromPem, type AuditSigner, type AuditVerifier } from '../../projections/audit/keys.ts'
import { checkProof, proveConsistency, proveInclusion } from '../../projections/audit/proofs.ts'
import { verifyAuditLog } from '../../projections/audit/verify.ts'
import { breachReportCsv } from '../../projections/breach/csv.ts'
import {
  buildBreachReport,
  type BreachReport,
  type PresignedUrl,
  type TopicUse,
  type UrlRefusal,
} from '../../projections/breach/report.ts'
import { auditVerifiers, openKennelReadModels } from '../../projections/catalogue.ts'
import { accountContacts } from '../breach-contacts.ts'
import { persistentProjections } from '../read-models.ts'
import type { EntryLookups, ReadModelStore } from '../../projections/readmodels/port.ts'
import { startProjectionRunner } from '../../projections/runner.ts'
import { action, readInputFile, withStore, writeOutput, type CommandContext } from '../context.ts'
import { progressBar } from './projections.ts'

// These commands read the log: they use the signing key that exists and never create one (a new
// key would sign heads that no holder of the old public key trusts, and be trusted instead of it).
// Only `kennel start` and `kennel projections rebuild` create the development key.

/** the existing signing key: its public half is exported, and it signs heads while catching up */
function existingSigner(config: Config): AuditSigner {
  const signer = findAuditSigner({ dataDir: config.dataDir, keyPath: config.auditKey, env: config.env })
  if (!signer)
    throw new KennelError(
      'KENNEL_ERR_CONFIG',
      'no audit signing key: set KENNEL_AUDIT_KEY to the key that signed this log (a command that reads the log creates none)',
    )
  return signer
}

/** the keys whose heads are trusted: the given public key (PEM file), else the signing key's */
function trustedVerifiers(config: Config, publicKeyFile?: string): AuditVerifier[] {
  const verifiers =
    publicKeyFile === undefined ? auditVerifiers(config) : [verifierFromPem(readInputFile(publicKeyFile, 'public key'))]
  if (verifiers.length === 0)
    throw new KennelError('KENNEL_ERR_CONFIG', 'no audit key to verify with: pass --public-key or set KENNEL_AUDIT_KEY')
  return verifiers
}

/** bring the read models up to the store's head, then run fn */
async function withReadModels<T>(
  ctx: CommandContext,
  fn: (readModels: ReadModelStore & EntryLookups) => Promise<T>,
): Promise<T> {
  const signer = existingSigner(ctx.config)
  const readModels = await openKennelReadModels(ctx.config)
  try {
    const runner = await startProjectionRunner({
      store: ctx.store,
      readModels,
      projections: persistentProjections(ctx.config, signer),
    })
    await runner.caughtUp
    await runner.stop()
    return await fn(readModels)
  } finally {
    await readModels.close()
  }
}

export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('the tamper-evident audit log (R17) and breach reports (R16)')

  audit
    .command('verify')
    .description(
      'recompute the Merkle tree from the stored events and check every signed head; exit 1 naming the first altered position',
    )
    .option('--public-key <pem>', 'trust heads signed by this Ed25519 public key (default: the configured signing key)')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (opts: { publicKey?: string; json?: boolean }) => {
        await withStore(async ({ config, store }) => {
          const verifiers = trustedVerifiers(config, opts.publicKey)
          const readModels = await openKennelReadModels(config)
          const head = await store.headPosition()
          const bar = progressBar('verify')
          try {
            const result = await verifyAuditLog({
              store,
              readModels,
              verifiers,
              headEveryEvents: config.auditHeadEveryEvents,
              onProgress: (n) => bar.update(n, Math.max(n, head)),
            })
            bar.stop()
            if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`)
            if (!result.ok)
              throw new KennelError('KENNEL_ERR_AUDIT_TAMPERED', `audit log altered: ${result.firstBreak!.message}`, {
                ...result.firstBreak,
              })
            if (!opts.json)
              process.stdout.write(
                `ok: ${result.events} events, ${result.headsChecked} signed heads checked (signed up to ${result.signedSize}), ${result.leavesCompared} recorded leaves compared\n`,
              )
          } finally {
            bar.stop()
            await readModels.close()
          }
        })
      }),
    )

  audit
    .command('heads')
    .description('export every signed tree head (for anchoring elsewhere)')
    .option('--out <file>', 'write to a file instead of stdout')
    .option('--json', 'JSON (the only format of this command; accepted so every command that reads takes --json)')
    .action(
      action(async (opts: { out?: string }) => {
        await withStore(async ({ config, store }) => {
          const signer = existingSigner(config)
          const heads = (await readHeads(store)).map((h) => ({ ...h.head, position: h.position }))
          writeOutput(
            `${JSON.stringify({ keyId: signer.keyId, publicKey: signer.publicKeyPem, heads }, null, 2)}\n`,
            opts.out,
          )
        })
      }),
    )

  audit
    .command('prove <eventId>')
    .description('print an inclusion proof of an event against the latest signed head (JSON)')
    .option('--out <file>', 'write to a file instead of stdout')
    .option('--json', 'JSON (the only format of this command; accepted so every command that reads takes --json)')
    .action(
      action(async (eventId: string, opts: { out?: string }) => {
        await withStore(async (ctx) => {
          const proof = await withReadModels(ctx, (readModels) =>
            proveInclusion({ store: ctx.store, readModels, verifiers: trustedVerifiers(ctx.config) }, eventId),
          )
          writeOutput(`${JSON.stringify(proof, null, 2)}\n`, opts.out)
        })
      }),
    )

  audit
    .command('consistency')
    .description('print a consistency proof that an older signed head is a prefix of a newer one (JSON)')
    .requiredOption('--from <size>', 'size of the older head')
    .option('--to <size>', 'size of the newer head (default: the latest)')
    .option('--out <file>', 'write to a file instead of stdout')
    .option('--json', 'JSON (the only format of this command; accepted so every command that reads takes --json)')
    .action(
      action(async (opts: { from: string; to?: string; out?: string }) => {
        const size = (v: string, name: string): number => {
          if (!/^\d+$/.test(v)) throw new KennelError('KENNEL_ERR_VALIDATION', `${name} must be a tree size (got ${v})`)
          return Number(v)
        }
        await withStore(async (ctx) => {
          const proof = await withReadModels(ctx, (readModels) =>
            proveConsistency(
              { store: ctx.store, readModels, verifiers: trustedVerifiers(ctx.config) },
              size(opts.from, '--from'),
              opts.to === undefined ? undefined : size(opts.to, '--to'),
            ),
          )
          writeOutput(`${JSON.stringify(proof, null, 2)}\n`, opts.out)
        })
      }),
    )

  audit
    .command('check-proof <file>')
    .description('verify an inclusion or consistency proof offline, with only the public key')
    .requiredOption('--public-key <pem>', 'the audit Ed25519 public key (PEM file)')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (file: string, opts: { publicKey: string; json?: boolean }) => {
        const text = readInputFile(file, 'proof')
        const verifier = verifierFromPem(readInputFile(opts.publicKey, 'public key'))
        let proof: unknown
        try {
          proof = JSON.parse(text)
        } catch (err) {
          throw new KennelError('KENNEL_ERR_PROOF_INVALID', `proof ${file} is not JSON: ${(err as Error).message}`)
        }
        checkProof(proof, verifier)
        if (opts.json) process.stdout.write(`${JSON.stringify({ ok: true, kind: (proof as { kind: string }).kind })}\n`)
        else process.stdout.write('ok: the proof verifies against the signed head\n')
      }),
    )

  audit
    .command('report')
    .description(
      'breach reconstruction: everything a credential did and touched in a window, per household (URLs used or refused after the revocation flagged), and who to notify at which address (R16)',
    )
    .requiredOption('--credential <kind:value>', 'device:<id>, cert:<serial>, account:<id> or token:<id>')
    .requiredOption('--since <iso>', 'start of the window (inclusive)')
    .requiredOption('--until <iso>', 'end of the window (exclusive)')
    .option(
      '--format <format>',
      `${REPORT_FORMATS.join(', ')}: csv is the notification list, one row per account holder and household`,
      'text',
    )
    .option('--json', 'the same as --format json')
    .option(
      '--out <file>',
      'write to a file instead of stdout (a new file is created 0600: the report holds contact addresses)',
    )
    .action(
      action(
        async (opts: {
          credential: string
          since: string
          until: string
          format: string
          json?: boolean
          out?: string
        }) => {
          const format = opts.json ? 'json' : opts.format
          if (!(REPORT_FORMATS as readonly string[]).includes(format))
            throw new KennelError(
              'KENNEL_ERR_VALIDATION',
              `--format must be ${REPORT_FORMATS.join(', ')} (got ${JSON.stringify(format)})`,
            )
          await withStore(async (ctx) => {
            const report = await withReadModels(ctx, (readModels) =>
              buildBreachReport(
                { store: ctx.store, readModels, contacts: accountContacts(ctx) },
                { credential: opts.credential, since: opts.since, until: opts.until, actor: ctx.actor },
              ),
            )
            const text =
              format === 'json'
                ? `${JSON.stringify(report, null, 2)}\n`
                : format === 'csv'
                  ? breachReportCsv(report)
                  : renderReport(report)
            writeOutput(text, opts.out, 0o600)
          })
        },
      ),
    )
}

const REPORT_FORMATS = ['text', 'json', 'csv'] as const

function renderReport(r: BreachReport): string {
  const list = (xs: string[]): string => (xs.length > 0 ? xs.join(', ') : '(none)')
  const afterRevocation = (x: { afterRevocation: boolean }): string => (x.afterRevocation ? ' AFTER REVOCATION' : '')
  const refusal = (x: UrlRefusal): string =>
    `${x.time} (${x.reason}, ${x.attempts} attempt${x.attempts === 1 ? '' : 's'}${x.sourceIp ? ` from ${x.sourceIp}` : ''})${afterRevocation(x)}`
  const url = (u: PresignedUrl): string =>
    `${u.kind} ${u.recordingId} issued ${u.issuedAt} until ${u.until}: ${u.used.length > 0 ? `used ${u.used.map((x) => `${x.time}${afterRevocation(x)}`).join(', ')}` : 'not used'}` +
    (u.refused.length > 0 ? `; refused ${u.refused.map(refusal).join(', ')}` : '')
  const topic = (t: TopicUse): string => `${t.action} ${t.topic} ×${t.count}${t.denied ? ' (denied)' : ''}`
  return [
    `breach report ${r.reportId}: ${r.credential}, ${r.since} to ${r.until} (events up to position ${r.throughPosition})`,
    `revoked: ${r.revocation ? `${r.revocation.type} at ${r.revocation.time} (#${r.revocation.position})` : 'no'}`,
    `actions (${r.actions.length}):`,
    ...r.actions.map((a) => `  ${a.time}  #${a.position}  ${a.type}  ${a.stream}`),
    `households: ${list(r.householdIds)}`,
    `accounts:   ${list(r.accountIds)}`,
    `devices:    ${list(r.deviceIds)}`,
    `recordings: ${list(r.recordingIds)}`,
    `topics:     ${list(r.topics.map(topic))}`,
    `presigned URLs (${r.urls.length}):`,
    ...r.urls.map((u) => `  ${url(u)}`),
    ...r.households.flatMap((h) => [
      `household ${h.householdId}${h.flags.length > 0 ? ` [${h.flags.join(', ')}]` : ''}:`,
      `  holders:    ${list(h.holders.map((x) => `${x.accountId} (${x.role})`))}`,
      `  devices:    ${list(h.deviceIds)}`,
      `  topics:     ${list(h.topics.map(topic))}`,
      `  recordings: ${list(h.recordingIds)}`,
      ...h.urls.map((u) => `  URL ${url(u)}`),
    ]),
    `notify (${r.notifications.length}):`,
    ...r.notifications.map(
      (n) => `  ${n.contact ?? '(no address on record)'}  account ${n.accountId}: ${n.reasons.join('; ')}`,
    ),
    '',
  ].join('\n')
}
