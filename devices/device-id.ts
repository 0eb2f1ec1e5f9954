import { KennelError } from '../infra/errors.ts'

// A device id is the certificate CN, the MQTT client id, a topic segment and part of stream
// names and file paths, so it admits nothing that means something in any of those.
const DEVICE_ID = /^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$/

export function isDeviceId(value: unknown): value is string {
  return typeof value === 'string' && DEVICE_ID.test(value)
}

export function assertDeviceId(value: unknown): string {
  if (isDeviceId(value)) return value
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : typeof value
  throw new KennelError(
    'KENNEL_ERR_DEVICE_ID_INVALID',
    `invalid device id ${shown}: 3-64 characters, lowercase letters, digits and '-', starting and ending with a letter or digit`,
  )
}
