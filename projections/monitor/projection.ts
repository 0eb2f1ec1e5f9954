import type { RecordedEvent } from '../../infra/eventstore/port.ts'
import { deterministicEventId } from '../event-id.ts'
import { emit } from '../outbox.ts'
import type { DocumentTx, Projection } from '../projection.ts'
import { ALERTS_STREAM, type SecurityAlertRaised } from './events.ts'
import { defaultThresholds, rules, type MonitorThresholds, type Rule } from './rules.ts'

// The security monitor (R11) as a projection: windows are computed from event times, never the
// clock, so a rebuild reaches the same decisions; a firing rule writes SecurityAlertRaised to the
// outbox with an id derived from the rule, the key and the triggering event, so a rebuild or a
// second process appending it again is absorbed by the store. After firing, a rule stays quiet
// for that key for one window.

export const MONITOR_PROJECTION = 'security-monitor'

interface WindowDoc {
  key: string
  /** event time (ms) of the oldest item; items hold their times as offsets from it, so the
   * numbers a batch serialises stay small */
  since: number
  /** [event time offset ms, weight or distinct value], oldest first, at most `count` of them */
  items: Array<[number, number | string]>
  /** no new alert for this key before this event time (ms) */
  quietUntil: number
}

const PRUNE_EVERY = 1000

export function createMonitorProjection(thresholds: Partial<MonitorThresholds> = {}): Projection {
  const t = { ...defaultThresholds, ...thresholds }
  const byType = new Map<string, Rule[]>()
  for (const r of rules) for (const type of r.eventTypes) byType.set(type, [...(byType.get(type) ?? []), r])
  // one string per rule, not one per event (a fresh string is hashed again at every lookup)
  const collections = new Map<Rule, string>(rules.map((r) => [r, `monitor-${r.name}`]))
  const collection = (r: Rule): string => collections.get(r)!

  function observe(tx: DocumentTx, rule: Rule, e: RecordedEvent, now: number): void {
    const o = rule.observe(e)
    if (!o) return
    const th = t[rule.name]
    const windowMs = th.windowSeconds * 1000
    const doc = tx.get<WindowDoc>(collection(rule), o.key) ?? { key: o.key, since: now, items: [], quietUntil: 0 }
    let since = doc.since
    let items = doc.items.filter(([at]) => since + at > now - windowMs)
    if (o.distinct !== undefined) items = items.filter(([, v]) => v !== o.distinct)
    items.push([now - since, o.distinct ?? o.weight ?? 1])
    // the newest `count` items decide whether the threshold is reached (each weighs at least 1)
    if (items.length > th.count) items = items.slice(items.length - th.count)
    const first = items[0]![0]
    if (first !== 0) {
      since += first
      items = items.map(([at, v]) => [at - first, v])
    }
    const measure = o.distinct !== undefined ? items.length : items.reduce((n, [, w]) => n + Number(w), 0)
    let quietUntil = doc.quietUntil
    if (measure >= th.count && now >= quietUntil) {
      quietUntil = now + windowMs
      const alert: SecurityAlertRaised = {
        type: 'SecurityAlertRaised',
        data: {
          rule: rule.name,
          key: o.key,
          severity: rule.severity,
          count: measure,
          threshold: th.count,
          windowSeconds: th.windowSeconds,
          firstAt: new Date(since).toISOString(),
          lastAt: e.time,
          triggeringEventId: e.id,
          triggeringPosition: e.position,
          summary: rule.describe(o.key, measure, th),
        },
      }
      emit(tx, ALERTS_STREAM, {
        id: deterministicEventId(`alert:${rule.name}:${o.key}:${e.id}`),
        ...alert,
        metadata: { actor: 'system:monitor', causationId: e.id },
      })
    }
    tx.put(collection(rule), o.key, { key: o.key, since, items, quietUntil } satisfies WindowDoc)
  }

  /** forget keys whose window and quiet period have passed, so memory follows activity */
  function prune(tx: DocumentTx, now: number): void {
    for (const rule of rules) {
      const windowMs = t[rule.name].windowSeconds * 1000
      const stale: string[] = []
      for (const doc of tx.values<WindowDoc>(collection(rule))) {
        const newest = doc.since + (doc.items[doc.items.length - 1]?.[0] ?? 0)
        if (newest <= now - windowMs && doc.quietUntil <= now) stale.push(doc.key)
      }
      for (const key of stale) tx.delete(collection(rule), key)
    }
  }

  return {
    name: MONITOR_PROJECTION,
    version: 2,
    eventTypes: [...byType.keys()],
    apply(tx, e) {
      const now = Date.parse(e.time)
      for (const rule of byType.get(e.type) ?? []) observe(tx, rule, e, now)
      const seen = (tx.get<number>('monitor-meta', 'seen') ?? 0) + 1
      tx.put('monitor-meta', 'seen', seen)
      if (seen % PRUNE_EVERY === 0) prune(tx, now)
    },
  }
}
