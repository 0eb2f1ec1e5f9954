// Shared JSON-schema fragments: the id patterns every param is checked against and the error body.

export const uuidPattern = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
/** devices/device-id.ts */
export const deviceIdPattern = '^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$'

export const uuidParam = (name: string) =>
  ({
    type: 'object',
    additionalProperties: false,
    required: [name],
    properties: { [name]: { type: 'string', pattern: uuidPattern } },
  }) as const

export const errorBody = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
} as const

export const errorResponses = { '4xx': errorBody, '5xx': errorBody } as const
