import path from 'node:path'
import type { Command } from 'commander'
import { accountStream, roles, type Role, type RoleGranted } from '../../api/accounts/events.ts'
import { EmailProtector } from '../../api/accounts/personal-data.ts'
import { accountByEmailHash, accountsProjection } from '../../api/accounts/projection.ts'
import { KeyRing, loadMasterKey } from '../../infra/blobstore/keys.ts'
import { KennelError } from '../../infra/errors.ts'
import { followProjections } from '../../projections/follow.ts'
import { action, withStore, type CommandContext } from '../context.ts'

/** Grant ops or auditor to the account with this e-mail (R4); the grant is an event naming who ran it. */
export async function grantRole(ctx: CommandContext, email: string, role: string): Promise<{ accountId: string; granted: boolean }> {
  if (!(roles as readonly string[]).includes(role)) throw new KennelError('KENNEL_ERR_ROLE_INVALID', `unknown role ${JSON.stringify(role)}: use ${roles.join(' or ')}`)
  const masterKey = loadMasterKey(ctx.config)
  const emails = new EmailProtector(masterKey, new KeyRing(path.join(ctx.config.dataDir, 'keys', 'persons'), masterKey, 'person'))
  const followed = followProjections(ctx.store, [accountsProjection])
  try {
    await followed.caughtUp
    const account = accountByEmailHash(followed.docs, emails.hash(email))
    if (!account) throw new KennelError('KENNEL_ERR_NOT_FOUND', 'no account with this e-mail address')
    if (account.roles.includes(role as Role)) return { accountId: account.accountId, granted: false }
    const event: RoleGranted = { type: 'RoleGranted', data: { accountId: account.accountId, role: role as Role, grantedAt: new Date().toISOString() } }
    await ctx.store.append(accountStream(account.accountId), [{ ...event, metadata: { actor: ctx.actor } }])
    return { accountId: account.accountId, granted: true }
  } finally {
    await followed.stop()
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
          process.stdout.write(granted ? `granted ${role} to account ${accountId}\n` : `account ${accountId} already has ${role}\n`)
        })
      }),
    )
}
