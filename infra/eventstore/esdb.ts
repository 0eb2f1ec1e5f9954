import { KennelError } from '../errors.ts'
import type { EventStore, OpenOptions } from './port.ts'

export async function openEsdbEventStore(_url: string, _options: OpenOptions): Promise<EventStore> {
  throw new KennelError('KENNEL_ERR_EVENTSTORE_URL', 'the EventStoreDB adapter is not built yet')
}
