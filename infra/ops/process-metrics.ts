import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'

// The process's own figures (CPU, memory, event-loop lag, GC, handles: prom-client's defaults)
// and kennel_build_info, in one registry per process: the defaults may be collected only once,
// and several kennels started in one process (tests) share them.

let registry: Registry | undefined

export function processMetrics(build: { version: string }): Registry {
  if (registry) return registry
  registry = new Registry()
  collectDefaultMetrics({ register: registry })
  new Gauge({
    name: 'kennel_build_info',
    help: 'always 1: the kennel version and the Node.js version running it',
    labelNames: ['version', 'node'],
    registers: [registry],
  }).set({ version: build.version, node: process.version }, 1)
  return registry
}
