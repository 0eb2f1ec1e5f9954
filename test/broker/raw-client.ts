import tls from 'node:tls'
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet'

// An MQTT 3.1.1 client made of a TLS socket and mqtt-packet, for what MQTT.js will not do: close
// before CONNACK, send garbage, withhold a PUBACK, and show the flags of every packet received.

export interface RawClient {
  socket: tls.TLSSocket
  /** every packet received so far, in order */
  readonly received: Packet[]
  /** resolves when the socket has closed (by either side) */
  readonly closed: Promise<void>
  send(packet: Packet): void
  /** the first packet received with this command, waiting for it when none has come yet */
  next(cmd: Packet['cmd'], timeoutMs?: number): Promise<Packet>
}

export interface RawDevice {
  deviceId: string
  keyPem: string
  certPem: string
}

export function connectPacket(clientId: string, options: Partial<IConnectPacket> = {}): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId,
    clean: true,
    keepalive: 60,
    ...options,
  } as Packet)
}

/** a TLS session with the device's certificate; no MQTT byte is sent */
export function rawTls(port: number, device: RawDevice, caPem: string): Promise<RawClient> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    ca: caPem,
    servername: 'localhost',
    key: device.keyPem,
    cert: device.certPem,
  })
  const received: Packet[] = []
  const waiters: Array<() => void> = []
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', (p: Packet) => {
    received.push(p)
    for (const w of waiters.splice(0)) w()
  })
  socket.on('data', (b: Buffer) => parser.parse(b))
  socket.on('error', () => undefined)
  let isClosed = false
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true
      for (const w of waiters.splice(0)) w()
      resolve()
    }),
  )
  const client: RawClient = {
    socket,
    received,
    closed,
    send: (packet) => void socket.write(mqttPacket.generate(packet)),
    next(cmd, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${cmd} within ${timeoutMs} ms`)), timeoutMs)
        const check = (): void => {
          const found = received.find((p) => p.cmd === cmd)
          if (found) return (clearTimeout(timer), resolve(found))
          if (isClosed) return (clearTimeout(timer), reject(new Error(`the connection closed before a ${cmd} arrived`)))
          waiters.push(check)
        }
        check()
      })
    },
  }
  return new Promise((resolve, reject) => {
    socket.once('secureConnect', () => resolve(client))
    socket.once('error', reject)
  })
}

/** CONNECT and wait for a CONNACK 0 */
export async function rawConnect(
  port: number,
  device: RawDevice,
  caPem: string,
  options: Partial<IConnectPacket> = {},
): Promise<RawClient> {
  const client = await rawTls(port, device, caPem)
  client.socket.write(connectPacket(device.deviceId, options))
  const connack = (await client.next('connack')) as Packet & { returnCode: number }
  if (connack.returnCode !== 0)
    throw Object.assign(new Error(`CONNACK ${connack.returnCode}`), { code: connack.returnCode })
  return client
}
