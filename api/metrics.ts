import { Counter, Gauge, Histogram, Registry } from 'prom-client'

// The API's Prometheus metrics (R11), in their own registry so that several API instances (tests)
// can coexist; the metrics server (listen.ts) merges it with the process's default registry.
export class ApiMetrics {
  readonly registry = new Registry()
  readonly requests = new Counter({
    name: 'kennel_api_requests_total',
    help: 'API responses by route and status',
    labelNames: ['route', 'status'],
    registers: [this.registry],
  })
  readonly duration = new Histogram({
    name: 'kennel_api_request_duration_seconds',
    help: 'API response time',
    labelNames: ['route'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  })
  readonly rateLimited = new Counter({
    name: 'kennel_api_rate_limited_total',
    help: 'requests refused by a rate limit (R6)',
    labelNames: ['limit'],
    registers: [this.registry],
  })
  readonly authFailures = new Counter({
    name: 'kennel_api_auth_failures_total',
    help: 'refused logins, tokens and device certificates',
    labelNames: ['kind'],
    registers: [this.registry],
  })
  readonly denylistHits = new Counter({
    name: 'kennel_api_denylist_hits_total',
    help: 'connections from denylisted addresses dropped on accept (R9)',
    registers: [this.registry],
  })
  /** set by the listener (listen.ts): its connections without a first request */
  countUnauthenticated: () => number = () => 0
  readonly unauthenticated: Gauge = new Gauge({
    name: 'kennel_api_unauthenticated_connections',
    help: 'TLS connections to the API that have not sent a first request (R9)',
    registers: [this.registry],
    collect: () => this.unauthenticated.set(this.countUnauthenticated()),
  })
  readonly unauthenticatedRefused = new Counter({
    name: 'kennel_api_unauthenticated_refused_total',
    help: 'connections refused on accept because their source held KENNEL_UNAUTHENTICATED_PER_IP connections without a request (R9)',
    registers: [this.registry],
  })
  readonly connectTimeouts = new Counter({
    name: 'kennel_api_connect_timeouts_total',
    help: 'connections closed for not finishing the TLS handshake (phase handshake) or not sending a first request (phase connect) in time (R9)',
    labelNames: ['phase'],
    registers: [this.registry],
  })
  readonly urlsIssued = new Counter({
    name: 'kennel_api_presigned_urls_total',
    help: 'presigned recording URLs issued (R5)',
    labelNames: ['method'],
    registers: [this.registry],
  })
}
