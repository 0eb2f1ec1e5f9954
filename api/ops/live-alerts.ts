import type { OutgoingHttpHeaders } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { EventStore, RecordedEvent } from '../../infra/eventstore/port.ts'
import { setSecurityHeaders } from '../plugins/security-headers.ts'

// Live security alerts for the ops console (R11), as server-sent events (WHATWG HTML §9.2) over
// the request that asked for them: the newest `backlog` alerts, then each one the security
// monitor appends. EventSource cannot send an Authorization header, so the console reads the
// stream with fetch(); the stream ends when the client goes away or the API stops.

/** the security monitor's stream (projections/monitor/events.ts ALERTS_STREAM) */
const ALERTS = 'alerts'
/** a comment line now and then, so that idle proxies and browsers keep the response open */
const HEARTBEAT_MS = 15_000

const frame = (e: RecordedEvent): string =>
  `id: ${e.position}\nevent: alert\ndata: ${JSON.stringify({ id: e.id, position: e.position, time: e.time, type: e.type, data: e.data })}\n\n`

export async function streamAlerts(
  store: EventStore,
  req: FastifyRequest,
  reply: FastifyReply,
  backlog: number,
): Promise<FastifyReply> {
  // what was there before the subscription starts goes out first; nothing is lost in between
  const head = await store.headPosition()
  const earlier =
    backlog > 0
      ? (await store.readStream(ALERTS, { direction: 'backwards', maxCount: backlog }))
          .filter((e) => e.position <= head)
          .reverse()
      : []
  setSecurityHeaders(reply)
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, {
    ...(reply.getHeaders() as OutgoingHttpHeaders),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
  })
  res.write(': kennel security alerts\n\n')
  for (const e of earlier) res.write(frame(e))
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS)
  const subscription = store.subscribe({
    after: head,
    filter: { streamPrefixes: [ALERTS] },
    onEvent: (e) => void (e.stream === ALERTS && res.write(frame(e))),
    onError: (err) => (req.log.warn({ err }, 'live alerts stopped'), res.end()),
  })
  const stop = () => {
    clearInterval(heartbeat)
    void subscription.stop()
  }
  // a client gone before this point has already closed the response
  if (res.destroyed) stop()
  else res.once('close', stop)
  return reply
}
