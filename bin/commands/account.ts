import { isIP } from 'node:net'
import type { Command } from 'commander'
import { accountStream, roles, type LoginBlockLifted, type Role, type RoleGranted } from '../../api/accounts/events.ts'
import { normaliseIp } from '../../api/accounts/login-limiter.ts'
import { eraseAccount, erasureReason } from '../../api/accounts/erasure.ts'
import { exportAccount } from '../../api/accounts/export.ts'
import { EmailProtector, emailLookupHash, PersonalData } from '../../api/accounts/personal-data.ts'
import {
  accountByEmailHash,
  accountById,
  accountsProjection,
  erasedAccount,
  pendingErasures,
  type AccountDoc,
  type ErasureStartedDoc,
} from '../../api/accounts/projection.ts'
import { householdsProjection } from '../../api/households/projection.ts'
import { recordingsProjection } from '../../api/recordings/projection.ts'
import { devicesProjection } from '../../devices/registry.ts'
import { KeyRing, loadMasterKey } from '../../infra/blobstore/keys.ts'
import { openBlobStore } from '../../infra/blobstore/open.ts'
import { openKeyStore } from '../../infra/keystore/open.ts'
import { HouseholdSources } from '../../infra/keystore/sealed-source.ts'
import { KennelError } from '../../infra/errors.ts'
import { followProjections } from '../../projections/follow.ts'
import { action, withStore, writeOutput, type CommandContext } from '../context.ts'

/** the account with this e-mail address, from the accounts read model */
async function findAccount<T>(ctx: CommandContext, email: string, fn: (account: AccountDoc) => Promise<T>): Promise<T> {
  const emailHash = emailLookupHash(loadMasterKey(ctx.config), email)
  const followed = followProjections(ctx.store, [accountsProjection])
  try {
    await followed.caughtUp
    const account = accountByEmailHash(followed.docs, emailHash)
    if (!account) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no account with this e-mail address')
    return await fn(account)
  } finally {
    await followed.stop()
  }
}

/** Grant ops or auditor to the account with this e-mail (R4); the grant is an event naming who ran it. */
export async function grantRole(
  ctx: CommandContext,
  email: string,
  role: string,
): Promise<{ accountId: string; granted: boolean }> {
  if (!(roles as readonly string[]).includes(role))
    throw new KennelError('KENNEL_ERR_ROLE_INVALID', `unknown role ${JSON.stringify(role)}: use ${roles.join(' or ')}`)
  return findAccount(ctx, email, async (account) => {
    if (account.roles.includes(role as Role)) return { accountId: account.accountId, granted: false }
    const event: RoleGranted = {
      type: 'RoleGranted',
      data: { accountId: account.accountId, role: role as Role, grantedAt: new Date().toISOString() },
    }
    await ctx.store.append(accountStream(account.accountId), [{ ...event, metadata: { actor: ctx.actor } }])
    return { accountId: account.accountId, granted: true }
  })
}

/** Lift the login waits of the account with this e-mail, at every address or at `ip` (with that
 * address's daily count) (R6). The running API follows the store and applies it at once. */
export async function unblockLogin(ctx: CommandContext, email: string, ip?: string): Promise<{ accountId: string }> {
  if (ip !== undefined && isIP(ip) === 0)
    throw new KennelError('KENNEL_ERR_VALIDATION', `--ip ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`)
  return findAccount(ctx, email, async (account) => {
    const event: LoginBlockLifted = {
      type: 'LoginBlockLifted',
      data: {
        accountId: account.accountId,
        ...(ip !== undefined ? { ip: normaliseIp(ip) } : {}),
        liftedAt: new Date().toISOString(),
      },
    }
    await ctx.store.append(accountStream(account.accountId), [{ ...event, metadata: { actor: ctx.actor } }])
    return { accountId: account.accountId }
  })
}

const ACCOUNT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Erase a person (R12) named by e-mail address or account id: what DELETE /v1/accounts/me does,
 * for ops (a request by mail, a court order). Recorded as AccountErased with who ran it and why;
 * a running server follows the store and ends the person's sessions and toys at once. */
export async function eraseAccountByOps(
  ctx: CommandContext,
  who: string,
  reason: string,
): Promise<{ accountId: string; households: number; devices: number; recordings: number }> {
  const why = erasureReason(reason)
  const masterKey = loadMasterKey(ctx.config)
  const keys = await openKeyStore(ctx.config)
  const personKeys = new KeyRing(keys, masterKey, 'person')
  const followed = followProjections(ctx.store, [
    devicesProjection,
    accountsProjection,
    householdsProjection,
    recordingsProjection,
  ])
  const blobs = openBlobStore(ctx.config, masterKey, keys)
  try {
    await followed.caughtUp
    const accountId = ACCOUNT_ID.test(who)
      ? who.toLowerCase()
      : accountByEmailHash(followed.docs, new EmailProtector(masterKey, personKeys).hash(who))?.accountId
    // the same answer for an address never seen and one erased: the address is not kept
    if (accountId === undefined) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no account with this e-mail address')
    if (!accountById(followed.docs, accountId) && !erasedAccount(followed.docs, accountId))
      throw new KennelError('KENNEL_ERR_NOT_FOUND', `no account ${accountId}`)
    const householdKeys = new KeyRing(keys, masterKey, 'household-data')
    const erased = await eraseAccount(
      {
        store: ctx.store,
        docs: followed.docs,
        blobs,
        personKeys,
        householdKeys,
        now: new Date(),
        metadata: { actor: ctx.actor },
      },
      accountId,
      why,
    )
    return {
      accountId,
      households: erased.householdIds.length,
      devices: erased.deviceIds.length,
      recordings: erased.recordingIds.length,
    }
  } finally {
    await blobs.close()
    await followed.stop()
    await keys.close()
  }
}

/** Erasures that started (AccountErasureStarted) and did not finish (no AccountErased): a crash,
 * a blob store or key store that failed midway. Each is finished by erasing the account again
 * (`kennel account erase <accountId> --reason …`), which does only the steps left. */
export async function listPendingErasures(ctx: Pick<CommandContext, 'store'>): Promise<ErasureStartedDoc[]> {
  const followed = followProjections(ctx.store, [accountsProjection])
  try {
    await followed.caughtUp
    return pendingErasures(followed.docs)
  } finally {
    await followed.stop()
  }
}

/** Export everything kennel holds about the person with this address (R12), as
 * GET/POST /v1/accounts/me/export does, for a request that reaches ops; recorded as AccountExported.
 * Without download URLs: they would expire (KENNEL_PRESIGN_TTL_SECONDS) before the file reaches
 * the person, who gets fresh ones from the API. */
export async function exportAccountByOps(ctx: CommandContext, email: string): Promise<Record<string, unknown>> {
  const masterKey = loadMasterKey(ctx.config)
  const keys = await openKeyStore(ctx.config)
  const personKeys = new KeyRing(keys, masterKey, 'person')
  const emails = new EmailProtector(masterKey, personKeys)
  const followed = followProjections(ctx.store, [
    devicesProjection,
    accountsProjection,
    householdsProjection,
    recordingsProjection,
  ])
  try {
    await followed.caughtUp
    const account = accountByEmailHash(followed.docs, emails.hash(email))
    if (!account) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no account with this e-mail address')
    return await exportAccount(
      {
        store: ctx.store,
        docs: followed.docs,
        emails,
        personalData: new PersonalData(personKeys),
        householdSources: new HouseholdSources(new KeyRing(keys, masterKey, 'household-data')),
        now: new Date(),
        metadata: { actor: ctx.actor },
      },
      account.accountId,
    )
  } finally {
    await followed.stop()
    await keys.close()
  }
}

export function registerAccountCommands(program: Command): void {
  const account = program.command('account').description('manage API accounts')
  account
    .command('grant')
    .description(`grant a role (${roles.join('|')}) to the account with this e-mail; recorded as RoleGranted`)
    .argument('<email>', "the account's e-mail address")
    .argument('<role>', roles.join(' or '))
    .action(
      action(async (email: string, role: string) => {
        await withStore(async (ctx) => {
          const { accountId, granted } = await grantRole(ctx, email, role)
          process.stdout.write(
            granted ? `granted ${role} to account ${accountId}\n` : `account ${accountId} already has ${role}\n`,
          )
        })
      }),
    )
  account
    .command('erase')
    .description(
      'erase a person (R12): their key is shredded (address, household names, source addresses read [erased]); households of which they are the last member are erased with their recordings, their toys revoked and unpaired; sessions end; recorded as AccountErased with who ran it and why',
    )
    .argument('<who>', "the account's e-mail address or its account id")
    .requiredOption(
      '--reason <text>',
      "why (1-200 printable characters, e.g. a ticket number; not the person's data): recorded in AccountErased",
    )
    .action(
      action(async (who: string, opts: { reason: string }) => {
        await withStore(async (ctx) => {
          const r = await eraseAccountByOps(ctx, who, opts.reason)
          process.stdout.write(
            `erased account ${r.accountId}: ${r.households} household(s), ${r.devices} toy(s) revoked and unpaired, ${r.recordings} recording(s) deleted\n`,
          )
        })
      }),
    )
  account
    .command('erasures')
    .description(
      'erasures that started and did not finish (AccountErasureStarted without AccountErased): finish each with `kennel account erase <accountId> --reason <text>`',
    )
    .option(
      '--pending',
      'the unfinished ones (the default, and the only listing there is: finished erasures are AccountErased events)',
    )
    .option('--json', 'one JSON object per line')
    .action(
      action(async (opts: { pending?: boolean; json?: boolean }) => {
        await withStore(async (ctx) => {
          const pending = await listPendingErasures(ctx)
          if (opts.json) {
            for (const e of pending) process.stdout.write(`${JSON.stringify(pendingView(e))}\n`)
            return
          }
          if (pending.length === 0) {
            process.stdout.write('no unfinished erasure\n')
            return
          }
          for (const e of pending) {
            process.stdout.write(
              `account ${e.accountId}: started ${e.startedAt} by ${e.actor} (${e.reason}); ${e.householdIds.length} household(s), ${e.deviceIds.length} toy(s), ${e.recordingIds.length} recording(s); finish: kennel account erase ${e.accountId} --reason <text>\n`,
            )
          }
        })
      }),
    )
  account
    .command('export')
    .description(
      'everything kennel holds about the person with this e-mail and their households, as JSON (sealed values opened with their key); recorded as AccountExported',
    )
    .argument('<email>', "the account's e-mail address")
    .requiredOption('--out <file>', 'where to write it (created 0600: it is personal data)')
    .action(
      action(async (email: string, opts: { out: string }) => {
        await withStore(async (ctx) => {
          const document = await exportAccountByOps(ctx, email)
          writeOutput(`${JSON.stringify(document, null, 2)}\n`, opts.out, 0o600)
          const account = document.account as { accountId: string }
          process.stdout.write(`exported account ${account.accountId} to ${opts.out}\n`)
        })
      }),
    )
  account
    .command('unblock')
    .description(
      'lift the login waits of the account with this e-mail (all addresses, or one with --ip, whose daily count is lifted too); recorded as LoginBlockLifted',
    )
    .argument('<email>', "the account's e-mail address")
    .option('--ip <addr>', 'only at this source address (IPv4 or IPv6)')
    .action(
      action(async (email: string, opts: { ip?: string }) => {
        await withStore(async (ctx) => {
          const { accountId } = await unblockLogin(ctx, email, opts.ip)
          process.stdout.write(
            `login waits lifted for account ${accountId} ${opts.ip !== undefined ? `at ${opts.ip} (and its daily count)` : 'at every address'}\n`,
          )
        })
      }),
    )
}

const pendingView = (e: ErasureStartedDoc) => ({
  accountId: e.accountId,
  startedAt: e.startedAt,
  actor: e.actor,
  reason: e.reason,
  householdIds: e.householdIds,
  deviceIds: e.deviceIds,
  recordingIds: e.recordingIds,
})
