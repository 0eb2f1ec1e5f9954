import * as x509 from '@peculiar/x509'
import type { EventStore, Subscription } from '../infra/eventstore/port.ts'
import type { Logger } from '../infra/log.ts'
import { caIdOf, type CaIssuer, type DeviceCa } from './ca.ts'
import type { CaEvent } from './events.ts'

// A running kennel picks up a device-CA rollover made by another process (`kennel ca rollover`,
// R18) without a restart: it follows the `ca-{caId}` streams, and a CA it does not trust yet makes
// it load the CA again from where it came from (the data dir, or the configured files) and hand
// the result to `onChange`, where the composition root swaps both listeners' trusted CAs. The
// rollover writes the new CA before it appends its CaCreated, so the load finds it. A reload only
// adds trust; a failed one leaves everything as it was.

/** A DeviceCa whose fields read the CA loaded last: the API and the server keep one object
 * across rollovers. Enrolment and renewal read it once per operation (devices/enroll.ts). */
export class FollowedDeviceCa implements DeviceCa {
  #current: DeviceCa

  constructor(initial: DeviceCa) {
    this.#current = initial
  }

  get trustedPem(): string {
    return this.#current.trustedPem
  }
  get chainPem(): string {
    return this.#current.chainPem
  }
  get isDevelopment(): boolean {
    return this.#current.isDevelopment
  }
  get origin(): DeviceCa['origin'] {
    return this.#current.origin
  }
  get issuer(): CaIssuer {
    return this.#current.issuer
  }
  get previousIssuers(): readonly CaIssuer[] {
    return this.#current.previousIssuers
  }
  get serverIssuer(): CaIssuer {
    return this.#current.serverIssuer
  }

  replace(next: DeviceCa): void {
    this.#current = next
  }
}

export interface CaFollowerOptions {
  store: EventStore
  /** follow events after this position: the store's head before the CA was loaded */
  after: number
  ca: FollowedDeviceCa
  /** load the CA again (devices/ca.ts loadDeviceCa with the process's configuration) */
  load(): Promise<DeviceCa>
  /** the CA changed: reload what depends on it; `ca` reads the new one once this resolves */
  onChange(next: DeviceCa): Promise<void>
  log: Pick<Logger, 'info' | 'warn' | 'error'>
}

export interface CaFollower {
  /** resolves once every CA recorded since `after` has been looked at */
  readonly ready: Promise<void>
  stop(): Promise<void>
}

export const caEventTypes = ['CaCreated', 'CaAdded'] as const satisfies readonly CaEvent['type'][]

export function followDeviceCa(opts: CaFollowerOptions): CaFollower {
  let sub: Subscription

  async function onCaRecorded(caId: string): Promise<void> {
    if (trustedCaIds(opts.ca).has(caId)) return
    try {
      const next = await opts.load()
      const nextIds = trustedCaIds(next)
      if (!nextIds.has(caId)) {
        // production: another process uses CA files this one was not started with
        opts.log.warn(
          { caId },
          'a device CA this process does not have was recorded; restart it with the new KENNEL_CA_* files',
        )
        return
      }
      // a reload only adds trust: a CA left out of the files (KENNEL_CA_PREVIOUS_CERTS forgotten)
      // would cut off its toys, so dropping one takes a deliberate restart
      const dropped = [...trustedCaIds(opts.ca)].filter((id) => !nextIds.has(id))
      if (dropped.length > 0) {
        opts.log.error(
          { caId, dropped },
          'the device CA files no longer hold CAs this process trusts; kept them, restart to drop them',
        )
        return
      }
      await opts.onChange(next)
      opts.ca.replace(next)
      opts.log.info(
        { caId: next.issuer.info.caId, trusted: trustedCaIds(next).size },
        'device CA rollover picked up: the listeners trust the new CA',
      )
    } catch (err) {
      // enrolment and renewal keep the old CA too, so that no toy gets a certificate the listeners refuse
      opts.log.error(
        { err, caId },
        'a new device CA was recorded but could not be loaded; the listeners keep the CAs they trust',
      )
    }
  }

  const ready = new Promise<void>((resolve, reject) => {
    sub = opts.store.subscribe({
      after: opts.after,
      filter: { streamPrefixes: ['ca-'], types: caEventTypes },
      onEvent: (event) => onCaRecorded((event as unknown as CaEvent).data.caId),
      onCaughtUp: resolve,
      onRetry: (err, delayMs) =>
        opts.log.warn({ err: err.message, delayMs }, 'CA follower: reading the event store failed; retrying'),
      onError(err) {
        opts.log.error({ err }, 'CA follower stopped: rollovers by other processes need a restart')
        reject(err)
      },
    })
  })
  return { ready, stop: () => sub.stop() }
}

function trustedCaIds(ca: DeviceCa): Set<string> {
  return new Set(x509.PemConverter.decode(ca.trustedPem).map((der) => caIdOf(new x509.X509Certificate(der))))
}
