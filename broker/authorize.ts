import { isDeviceId } from '../devices/device-id.ts'

// Topic policy (R4): a toy publishes and subscribes only under `toys/{deviceId}/`. These are
// plain functions so that they are tested in isolation and again end-to-end through the hooks.

export type TopicDecision = { ok: true } | { ok: false; reason: string }

/** Longest topic or filter accepted, in UTF-8 bytes (MQTT allows 65,535; no toy needs that). */
export const MAX_TOPIC_BYTES = 1024

export const ownPrefix = (deviceId: string): string => `toys/${deviceId}/`

const allow: TopicDecision = { ok: true }
const deny = (reason: string): TopicDecision => ({ ok: false, reason })

// [MQTT-1.5.3-2] no U+0000; [MQTT-4.7.3-2] control characters are refused as well. U+FFFD is
// what the decoder leaves for invalid UTF-8 [MQTT-1.5.3-1], so it is refused too.
const FORBIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f\ufffd]/

function checkText(deviceId: string, topic: unknown): TopicDecision | undefined {
  if (!isDeviceId(deviceId)) return deny('invalid device id')
  if (typeof topic !== 'string' || topic.length === 0) return deny('empty topic')
  if (Buffer.byteLength(topic, 'utf8') > MAX_TOPIC_BYTES) return deny('topic too long')
  if (FORBIDDEN_CHARS.test(topic)) return deny('control character or invalid UTF-8 in topic')
  if (topic.startsWith('$'))
    return deny(topic.startsWith('$share/') ? 'shared subscriptions are not allowed' : 'system topics are not allowed')
  return undefined
}

/** May `deviceId` publish on `topic`? Also applies to its last will. */
export function canPublish(deviceId: string, topic: unknown): TopicDecision {
  const bad = checkText(deviceId, topic)
  if (bad) return bad
  const t = topic as string
  if (t.includes('+') || t.includes('#')) return deny('wildcard in publish topic') // [MQTT-3.3.2-2]
  const prefix = ownPrefix(deviceId)
  if (!t.startsWith(prefix) || t.length === prefix.length) return deny('topic outside the device prefix')
  return allow
}

/** May `deviceId` subscribe to `filter`? Wildcards may only widen within its own prefix. */
export function canSubscribe(deviceId: string, filter: unknown): TopicDecision {
  const bad = checkText(deviceId, filter)
  if (bad) return bad
  const f = filter as string
  const levels = f.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!
    // [MQTT-4.7.1-2] '#' alone and last; [MQTT-4.7.1-3] '+' alone in its level
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return deny('malformed multi-level wildcard')
    if (level.includes('+') && level !== '+') return deny('malformed single-level wildcard')
  }
  const prefix = ownPrefix(deviceId)
  if (!f.startsWith(prefix) || f.length === prefix.length) return deny('filter outside the device prefix')
  return allow
}

/** Is a delivery of `topic` to `deviceId` allowed? The second line of defence behind the
 * subscription check: a persistent session's subscriptions live in the session store (Redis in a
 * cluster) and outlive the rules they were granted under, so every delivery is checked again. */
export function canReceive(deviceId: string, topic: string): boolean {
  return isDeviceId(deviceId) && topic.startsWith(ownPrefix(deviceId)) && !FORBIDDEN_CHARS.test(topic)
}

/** The topic the backend uses to reach a toy: `toys/{id}/inbox/{subtopic}`. */
export function inboxTopic(deviceId: string, subtopic: string): TopicDecision & { topic?: string } {
  if (!isDeviceId(deviceId)) return deny('invalid device id')
  if (subtopic.length === 0 || subtopic.split('/').some((l) => l.length === 0))
    return deny('empty topic level in subtopic')
  const topic = `${ownPrefix(deviceId)}inbox/${subtopic}`
  const d = canPublish(deviceId, topic)
  return d.ok ? { ok: true, topic } : d
}
