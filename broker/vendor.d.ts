// aedes-persistence-redis ships no types; only the factory is used (broker/cluster.ts).
declare module 'aedes-persistence-redis' {
  const persistence: (opts: { conn?: unknown; maxSessionDelivery?: number }) => unknown
  export default persistence
}
