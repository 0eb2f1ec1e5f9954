import { isIP } from 'node:net'
import path from 'node:path'
import type { Command } from 'commander'
import { accountStream, roles, type LoginBlockLifted, type Role, type RoleGranted } from '../../api/accounts/events.ts'
import { normaliseIp } from '../../api/accounts/login-limiter.ts'
import { EmailProtector } from '../../api/accounts/personal-data.ts'
import { accountByEmailHash, accountsProjection, type AccountDoc } from '../../api/accounts/projection.ts'
import { KeyRing, loadMasterKey } from '../../infra/blobstore/keys.ts'
import { KennelError } from '../../infra/errors.ts'
import { followProjections } from '../../projections/follow.ts'
import { action, withStore, type CommandContext } from '../context.ts'

/** the account with this e-mail address, from the accounts read model */
async function findAccount<T>(ctx: CommandContext, email: string, fn: (account: AccountDoc) => Promise<T>): Promise<T> {
  const masterKey = loadMasterKey(ctx.config)
  const emails = new EmailProtector(masterKey, new KeyRing(path.join(ctx.config.dataDir, 'keys', 'persons'), masterKey, 'person'))
  const followed = followProjections(ctx.store, [accountsProjection])
  try {
    await followed.caughtUp
    const account = accountByEmailHash(followed.docs, emails.hash(email))
    if (!account) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no account with this e-mail address')
    return await fn(account)
  } finally {
    await followed.stop()
  }
}

/** Grant ops or auditor to the account with this e-mail (R4); the grant is an event naming who ran it. */
export async function grantRole(ctx: CommandContext, email: string, role: string): Promise<{ accountId: string; granted: boolean }> {
  if (!(roles as readonly string[]).includes(role)) throw new KennelError('KENNEL_ERR_ROLE_INVALID', `unknown role ${JSON.stringify(role)}: use ${roles.join(' or ')}`)
  return findAccount(ctx, email, async (account) => {
    if (account.roles.includes(role as Role)) return { accountId: account.accountId, granted: false }
    const event: RoleGranted = { type: 'RoleGranted', data: { accountId: account.accountId, role: role as Role, grantedAt: new Date().toISOString() } }
    await ctx.store.append(accountStream(account.accountId), [{ ...event, metadata: { actor: ctx.actor } }])
    return { accountId: account.accountId, granted: true }
  })
}

/** Lift the login waits of the account with this e-mail, at every address or at `ip` (with that
 * address's daily count) (R6). The running API follows the store and applies it at once. */
export async function unblockLogin(ctx: CommandContext, email: string, ip?: string): Promise<{ accountId: string }> {
  if (ip !== undefined && isIP(ip) === 0) throw new KennelError('KENNEL_ERR_VALIDATION', `--ip ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`)
  return findAccount(ctx, email, async (account) => {
    const event: LoginBlockLifted = { type: 'LoginBlockLifted', data: { accountId: account.accountId, ...(ip !== undefined ? { ip: normaliseIp(ip) } : {}), liftedAt: new Date().toISOString() } }
    await ctx.store.append(accountStream(account.accountId), [{ ...event, metadata: { actor: ctx.actor } }])
    return { accountId: account.accountId }
  })
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
          process.stdout.write(granted ? `granted ${role} to account ${accountId}\n` : `account ${accountId} already has ${role}\n`)
        })
      }),
    )
  account
    .command('unblock')
    .description('lift the login waits of the account with this e-mail (all addresses, or one with --ip, whose daily count is lifted too); recorded as LoginBlockLifted')
    .argument('<email>', "the account's e-mail address")
    .option('--ip <addr>', 'only at this source address (IPv4 or IPv6)')
    .action(
      action(async (email: string, opts: { ip?: string }) => {
        await withStore(async (ctx) => {
          const { accountId } = await unblockLogin(ctx, email, opts.ip)
          process.stdout.write(`login waits lifted for account ${accountId} ${opts.ip !== undefined ? `at ${opts.ip} (and its daily count)` : 'at every address'}\n`)
        })
      }),
    )
}
