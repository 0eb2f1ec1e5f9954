import { type Config, loadConfig } from '../infra/config.ts'
import { KennelError } from '../infra/errors.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { EventStore } from '../infra/eventstore/port.ts'

// What every CLI command needs: the validated configuration and, for most, the event store.
// Errors end the process with the catalogue's message and exit code, never a stack trace.

export interface CommandContext {
  config: Config
  store: EventStore
  /** `cli:<user>` — who ran the command, recorded as the actor of its events */
  actor: string
}

export function cliActor(): string {
  return `cli:${process.env.USER ?? process.env.LOGNAME ?? 'unknown'}`
}

export async function withStore<T>(fn: (ctx: CommandContext) => Promise<T>): Promise<T> {
  const config = loadConfig()
  const store = await openEventStore(config.eventStoreUrl, { environment: config.env })
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
