import { randomUUID } from 'node:crypto'
import argon2 from 'argon2'
import type { Mail } from '../../infra/mail/port.ts'
import { handleCommand } from '../../infra/eventstore/command.ts'
import type { ApiContext } from '../context.ts'
import { accountDecider, decide } from './account.ts'
import { reserveEmail } from './email-reservation.ts'
import { accountStream } from './events.ts'
import { accountByEmailHash, type AccountDoc } from './projection.ts'
import { accountExistsMail, verificationMail } from './signup-mails.ts'
import { newVerification } from './verification.ts'

// Sign-up (R15) answers every caller the same way, so it does not tell who has an account: the
// password is hashed whether the address is new or known, and the difference goes only to the
// mailbox. A new address gets an unconfirmed account and a token; an unconfirmed account gets a
// new token, bound to the password given now; a confirmed account is not changed at all, its
// owner is told that someone tried.

export function hashPassword(ctx: ApiContext, password: string): Promise<string> {
  return argon2.hash(password, { type: argon2.argon2id, ...ctx.passwordHashing })
}

export async function signUp(
  ctx: ApiContext,
  email: string,
  password: string,
  request: { sourceIp: string; correlationId: string },
): Promise<void> {
  const emailHash = ctx.emails.hash(email)
  const passwordHash = await hashPassword(ctx, password)
  let account = accountByEmailHash(ctx.docs, emailHash)
  if (!account) {
    const accountId = randomUUID()
    const metadata = {
      actor: `account:${accountId}`,
      ...(await ctx.personalData.source(accountId, request.sourceIp)),
      correlationId: request.correlationId,
    }
    // the read model answers the common case; the reservation decides a race (email-reservation.ts)
    if (await reserveEmail(ctx, emailHash, accountId, metadata))
      return createAccount(ctx, accountId, email, emailHash, passwordHash, metadata)
    await ctx.catchUp()
    account = accountByEmailHash(ctx.docs, emailHash)
    // the sign-up holding the reservation is still creating the account: it mails the address
    if (!account) return
  }
  if (account.verified) return mail(ctx, emailHash, () => accountExistsMail(email))
  return resendVerification(ctx, account, email, passwordHash, request)
}

async function createAccount(
  ctx: ApiContext,
  accountId: string,
  email: string,
  emailHash: string,
  passwordHash: string,
  metadata: Record<string, string>,
): Promise<void> {
  const emailSealed = await ctx.emails.seal(accountId, email)
  const { token, event } = newVerification(ctx, accountId, passwordHash)
  const create = {
    type: 'CreateAccount',
    accountId,
    emailHash,
    emailSealed,
    passwordHash,
    now: ctx.now(),
    verification: event.data,
  } as const
  await handleCommand(ctx.store, accountStream(accountId), accountDecider, (state) => decide(create, state), {
    append: ctx.append,
    metadata: (e) => (e.type === 'AccountCreated' ? metadata : { ...metadata, actor: 'anonymous' }),
  })
  await mail(ctx, emailHash, () => verificationMail(email, token, event.data.expiresAt))
}

async function resendVerification(
  ctx: ApiContext,
  account: AccountDoc,
  email: string,
  passwordHash: string,
  request: { sourceIp: string; correlationId: string },
): Promise<void> {
  if (await overCap(ctx, account.emailHash)) return
  const { token, event } = newVerification(ctx, account.accountId, passwordHash)
  const metadata = {
    actor: 'anonymous',
    ...(await ctx.personalData.source(account.accountId, request.sourceIp)),
    correlationId: request.correlationId,
  }
  const { events } = await handleCommand(
    ctx.store,
    accountStream(account.accountId),
    accountDecider,
    (state) => decide({ type: 'RequestVerification', verification: event.data }, state),
    { append: ctx.append, metadata },
  )
  // confirmed since the read model was read: the token would confirm nothing
  if (events.length > 0) await ctx.mailer.send(verificationMail(email, token, event.data.expiresAt))
}

async function mail(ctx: ApiContext, emailHash: string, build: () => Mail): Promise<void> {
  if (await overCap(ctx, emailHash)) return
  await ctx.mailer.send(build())
}

async function overCap(ctx: ApiContext, emailHash: string): Promise<boolean> {
  const retryAfter = await ctx.signupMailLimiter.consume(emailHash)
  if (retryAfter === undefined) return false
  ctx.metrics.rateLimited.inc({ limit: 'signup-mail' })
  return true
}
