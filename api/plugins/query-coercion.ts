import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify'

// Bodies are JSON and are validated exactly as sent (ajv `coerceTypes: false`, api/app.ts), so
// `{"bytes":"5"}` is refused instead of being read as 5. Query strings are text by nature: the
// integers, numbers and booleans a route's querystring schema declares are converted here, just
// before validation, and the schema then checks them like any other value.

type Scalar = 'integer' | 'number' | 'boolean'
const INTEGER = /^-?\d{1,15}$/
const NUMBER = /^-?\d{1,15}(\.\d{1,15})?$/

function convert(value: string, type: Scalar): unknown {
  if (type === 'boolean') return value === 'true' ? true : value === 'false' ? false : value
  return (type === 'integer' ? INTEGER : NUMBER).test(value) ? Number(value) : value
}

function scalarsOf(schema: unknown): Array<[string, Scalar]> {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties ?? {}
  return Object.entries(properties).flatMap(([name, s]) =>
    s.type === 'integer' || s.type === 'number' || s.type === 'boolean' ? [[name, s.type] as [string, Scalar]] : [],
  )
}

export function registerQueryCoercion(app: FastifyInstance): void {
  app.addHook('onRoute', (route: RouteOptions) => {
    const scalars = scalarsOf(route.schema?.querystring)
    if (scalars.length === 0) return
    const coerce = async (req: FastifyRequest): Promise<void> => {
      const query = req.query as Record<string, unknown>
      for (const [name, type] of scalars) {
        const value = query[name]
        if (typeof value === 'string') query[name] = convert(value, type)
      }
    }
    const existing = route.preValidation
    route.preValidation =
      existing === undefined ? [coerce] : [...(Array.isArray(existing) ? existing : [existing]), coerce]
  })
}
