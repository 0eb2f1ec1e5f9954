import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { getSystemErrorMap } from 'node:util'
import { type Config, loadConfig } from '../infra/config.ts'
import { type ErrorCode, errorCatalogue, KennelError } from '../infra/errors.ts'
import type { EventStore } from '../infra/eventstore/port.ts'
import { openConfiguredEventStore } from './event-store.ts'

// What every CLI command needs: the validated configuration and, for most, the event store.
// Errors end the process with the catalogue's message and exit code, never a stack trace.

export interface CommandContext {
  config: Config
  store: EventStore
  /** `cli:<user>` — who ran the command, recorded as the actor of its events */
  actor: string
}

export function cliActor(): string {
  return `cli:${process.env.USER || process.env.LOGNAME || osUser() || 'unknown'}`
}

/** the OS account running the command, when the environment does not say (cron, containers) */
function osUser(): string | undefined {
  try {
    return os.userInfo().username || undefined
  } catch {
    return undefined
  }
}

export async function withStore<T>(fn: (ctx: CommandContext) => Promise<T>): Promise<T> {
  const config = loadConfig()
  const store = await openConfiguredEventStore(config)
  try {
    return await fn({ config, store, actor: cliActor() })
  } finally {
    await store.close()
  }
}

export function fail(err: unknown): never {
  if (err instanceof KennelError) {
    process.stderr.write(`kennel: ${err.message} (${err.code})\n`)
    process.exit(err.exitCode)
  }
  const message = err instanceof Error ? err.message : String(err)
  process.stderr.write(`kennel: internal error: ${message}\n`)
  if (process.env.KENNEL_DEBUG) process.stderr.write(`${err instanceof Error ? err.stack : ''}\n`)
  process.exit(70)
}

/** wrap a commander action so that every failure is reported by `fail` */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args)
    } catch (err) {
      fail(err)
    }
  }
}

/** what a failed open of a file named on the command line means to the user */
const FILE_ERRORS: Partial<Record<string, ErrorCode>> = {
  ENOENT: 'KENNEL_ERR_NOT_FOUND',
  ENOTDIR: 'KENNEL_ERR_NOT_FOUND',
  EISDIR: 'KENNEL_ERR_VALIDATION',
  EACCES: 'KENNEL_ERR_FORBIDDEN',
  EPERM: 'KENNEL_ERR_FORBIDDEN',
  EROFS: 'KENNEL_ERR_FORBIDDEN',
}

function fileError(err: unknown, doing: string): KennelError {
  const e = err as NodeJS.ErrnoException
  const reason = (e.errno !== undefined ? getSystemErrorMap().get(e.errno)?.[1] : undefined) ?? e.message
  return new KennelError(FILE_ERRORS[e.code ?? ''] ?? 'KENNEL_ERR_INTERNAL', `cannot ${doing}: ${reason}`, undefined, {
    cause: err,
  })
}

/** the text of a file named on the command line; a missing or unreadable one is a coded error naming it */
export function readInputFile(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw fileError(err, `read the ${what} ${file}`)
  }
}

/** write a command's output to the file named with --out, or to stdout; `mode` applies to a
 * file this creates (0600 for personal data) */
export function writeOutput(text: string, out: string | undefined, mode = 0o666): void {
  if (out === undefined) return void process.stdout.write(text)
  try {
    fs.writeFileSync(out, text, { mode })
  } catch (err) {
    throw missingDirectory(err, out) ?? fileError(err, `write ${out}`)
  }
}

/** --out in a directory that does not exist: name the directory, which is what to change */
function missingDirectory(err: unknown, out: string): KennelError | undefined {
  const code = (err as NodeJS.ErrnoException).code
  if (code !== 'ENOENT' && code !== 'ENOTDIR') return undefined
  const dir = path.dirname(path.resolve(out))
  const problem = code === 'ENOENT' ? `the directory ${dir} does not exist` : `${dir} is not a directory`
  return new KennelError(
    'KENNEL_ERR_NOT_FOUND',
    `cannot write ${out}: ${problem}; create it or give --out a path in an existing directory`,
    undefined,
    { cause: err },
  )
}

/** commander's own usage errors (a missing required option, an unknown one) exit with the
 * catalogue's usage code, as the README documents; --help exits 0 */
export function exitOnUsageError(err: { exitCode: number }): never {
  process.exit(err.exitCode === 0 ? 0 : errorCatalogue.KENNEL_ERR_VALIDATION.exit)
}
