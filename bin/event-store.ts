import type { Config } from '../infra/config.ts'
import { isKennelError, KennelError } from '../infra/errors.ts'
import { openEventStore } from '../infra/eventstore/open.ts'
import type { EventStore } from '../infra/eventstore/port.ts'

/** The configured event store; one made by another environment is refused (R8) with the two
 * ways out: run as that environment, or point at this environment's store. */
export async function openConfiguredEventStore(
  config: Pick<Config, 'eventStoreUrl' | 'env' | 'eventStore'>,
): Promise<EventStore> {
  try {
    return await openEventStore(config.eventStoreUrl, { environment: config.env })
  } catch (err) {
    if (!isKennelError(err, 'KENNEL_ERR_ENVIRONMENT_MISMATCH')) throw err
    const stored = (err.details as { stored?: string } | undefined)?.stored ?? 'another'
    const variable = config.eventStore === 'sqlite:' ? 'KENNEL_DATA_DIR' : 'KENNEL_EVENTSTORE'
    throw new KennelError(
      'KENNEL_ERR_ENVIRONMENT_MISMATCH',
      `${err.message.replace(/ \(R8\)$/, '')}: set KENNEL_ENV=${stored} if this is a ${stored} deployment, or set ${variable} to the ${config.env} environment's store; never share one store between environments (R8)`,
      err.details,
      { cause: err },
    )
  }
}
