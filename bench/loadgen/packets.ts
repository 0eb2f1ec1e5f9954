import mqttPacket from 'mqtt-packet'

// The load generator's MQTT 3.1.1 on the wire: packets are encoded once with mqtt-packet and
// patched in place per message (send time, sequence number, packet id), and incoming bytes are
// split into packets by a streaming reader that allocates nothing per packet, so that the
// generator's per-message CPU stays far below the broker's.

const PAYLOAD_BYTES = 64
// MQTT 3.1.1 §2.2.1 control packet types (the high nibble of the first byte)
export const CONNACK = 2
export const PUBLISH = 3
export const PUBACK = 4
export const SUBACK = 9

export const DISCONNECT_PACKET: Buffer = mqttPacket.generate({ cmd: 'disconnect' })

export function connectPacket(clientId: string, keepalive: number): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId,
    keepalive,
  })
}

export function subscribePacket(topic: string, qos: 0 | 1): Buffer {
  return mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] })
}

export function pubackPacket(into: Buffer, offset: number, packetId: number): number {
  into[offset] = 0x40
  into[offset + 1] = 2
  into.writeUInt16BE(packetId, offset + 2)
  return offset + 4
}

/** A PUBLISH encoded once; `writeInto` copies it and patches the payload's send time and
 * sequence number (and, at QoS 1, the packet id). */
export class PublishTemplate {
  readonly bytes: Buffer
  private readonly payloadAt: number
  constructor(
    topic: string,
    readonly qos: 0 | 1,
  ) {
    this.bytes = mqttPacket.generate({
      cmd: 'publish',
      topic,
      payload: Buffer.alloc(PAYLOAD_BYTES),
      qos,
      messageId: 1,
      retain: false,
      dup: false,
    })
    this.payloadAt = this.bytes.length - PAYLOAD_BYTES
  }

  writeInto(into: Buffer, offset: number, sentAt: number, seq: number, packetId: number): number {
    this.bytes.copy(into, offset)
    if (this.qos === 1) into.writeUInt16BE(packetId, offset + this.payloadAt - 2)
    into.writeDoubleLE(sentAt, offset + this.payloadAt)
    into.writeUInt32LE(seq, offset + this.payloadAt + 8)
    return offset + this.bytes.length
  }
}

/** Where a received PUBLISH's fields are, within the reader's buffer. */
export interface PublishView {
  qos: number
  packetId: number
  sentAt: number
  seq: number
}

export function readPublish(header: number, buf: Buffer, start: number, end: number, out: PublishView): PublishView {
  out.qos = (header >> 1) & 3
  const topicLength = buf.readUInt16BE(start)
  let at = start + 2 + topicLength
  out.packetId = 0
  if (out.qos > 0) {
    out.packetId = buf.readUInt16BE(at)
    at += 2
  }
  const ours = end - at === PAYLOAD_BYTES
  out.sentAt = ours ? buf.readDoubleLE(at) : NaN
  out.seq = ours ? buf.readUInt32LE(at + 8) : -1
  return out
}

export type PacketHandler = (header: number, buf: Buffer, start: number, end: number) => void

/** Splits a byte stream into MQTT packets (fixed header, remaining length §2.2.3) and hands
 * each packet's header byte and body bounds to `onPacket`; partial packets wait for more bytes. */
export class PacketReader {
  private pending: Buffer | undefined
  constructor(public onPacket: PacketHandler) {}

  push(chunk: Buffer): void {
    const data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk
    let offset = 0
    for (;;) {
      const bodyAt = this.bodyStart(data, offset)
      if (bodyAt < 0) break
      const length = this.remaining
      if (data.length - bodyAt < length) break
      this.onPacket(data[offset]!, data, bodyAt, bodyAt + length)
      offset = bodyAt + length
    }
    this.pending = offset < data.length ? data.subarray(offset) : undefined
  }

  private remaining = 0
  private bodyStart(data: Buffer, offset: number): number {
    let multiplier = 1
    let length = 0
    for (let i = offset + 1; i < data.length && i <= offset + 4; i++) {
      const byte = data[i]!
      length += (byte & 0x7f) * multiplier
      multiplier *= 128
      if ((byte & 0x80) === 0) {
        this.remaining = length
        return i + 1
      }
    }
    return -1
  }
}
