import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Registry } from 'prom-client'
import type { Readiness } from './readiness.ts'

// The operations listener (R11): GET /metrics (Prometheus), /healthz (liveness) and /readyz
// (readiness with its figures). Plain HTTP, so it binds to loopback unless KENNEL_METRICS_HOST
// names a private address a scraper reaches.

export interface OpsServerOptions {
  host: string
  port: number
  registries: Registry[]
  readiness: Readiness
}

export interface ListeningOps {
  port: number
  close(): Promise<void>
}

const json = (res: http.ServerResponse, status: number, body: unknown): void =>
  void res
    .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    .end(`${JSON.stringify(body)}\n`)

export async function listenOps(opts: OpsServerOptions): Promise<ListeningOps> {
  const server = http.createServer((req, res) => {
    const route = req.method === 'GET' ? req.url?.split('?')[0] : undefined
    if (route === '/metrics') {
      const merged = Registry.merge(opts.registries)
      merged.metrics().then(
        (text) => res.writeHead(200, { 'content-type': merged.contentType }).end(text),
        () => json(res, 500, { error: { code: 'KENNEL_ERR_INTERNAL', message: 'collecting the metrics failed' } }),
      )
    } else if (route === '/healthz') {
      json(res, 200, { status: 'ok' })
    } else if (route === '/readyz') {
      opts.readiness
        .report()
        .then((r) => json(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', checks: r.checks }))
    } else {
      json(res, 404, { error: { code: 'KENNEL_ERR_NOT_FOUND', message: 'only GET /metrics, /healthz and /readyz' } })
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => (server.off('error', reject), resolve()))
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeIdleConnections())),
  }
}
