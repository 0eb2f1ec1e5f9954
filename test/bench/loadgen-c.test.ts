import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import mqttPacket from 'mqtt-packet'
import t from 'tap'
import { MosquittoUnderTest, mosquittoVersion } from '../../bench/compare/mosquitto.ts'
import { type PreparedData, prepareData } from '../../bench/compare/toys.ts'
import { buildCGenerator, requestLine } from '../../bench/loadgen/cproc.ts'
import { type Generator, LoadPool } from '../../bench/loadgen/pool.ts'

// The C load generator (bench/loadgen/c/loadgen.c): compiled as the bench compiles it, then run
// through the bench's own pool against a tiny in-test broker that drops and duplicates
// messages on purpose (the QoS 1 accounting must see exactly those), splits every packet it
// writes across two TLS records (partial reads), and against Mosquitto when it is installed.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-loadgen-c-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

const hasCc = spawnSync(process.env.CC ?? 'cc', ['--version']).error === undefined
const build = hasCc ? buildCGenerator({ dir: path.join(dir, 'cache') }) : undefined
const skip = !hasCc ? 'no C compiler (cc) on this machine' : build && 'problem' in build ? build.problem : false

t.test('without a compiler, the build says what to install', async (t) => {
  const r = buildCGenerator({ cc: path.join(dir, 'no-such-cc'), dir: path.join(dir, 'cache-none') })
  t.ok('problem' in r)
  t.match('problem' in r ? r.problem : '', /apt-get install gcc libssl-dev/)
})

t.test(
  'without the OpenSSL headers, the build says to install libssl-dev',
  { skip: hasCc ? false : 'no C compiler' },
  async (t) => {
    const source = path.join(dir, 'needs-header.c')
    fs.writeFileSync(source, '#include <openssl/no-such-header.h>\nint main(void) { return 0; }\n')
    const r = buildCGenerator({ source, dir: path.join(dir, 'cache-header') })
    t.match('problem' in r ? r.problem : '', /apt-get install libssl-dev/)
  },
)

t.test('a build is cached by the hash of its source', { skip }, async (t) => {
  const again = buildCGenerator({ dir: path.join(dir, 'cache') })
  t.same(again, { binary: (build as { binary: string }).binary, compiled: false })
})

t.test('requests are lines of percent-encoded name=value pairs', async (t) => {
  t.equal(
    requestLine(3, 'connects', { ids: ['a b', 'c,d'], opts: { inFlight: 2 } }),
    '3 connects ids=a%20b,c%2Cd inFlight=2\n',
  )
})

let data: PreparedData | undefined
const prepared = async (): Promise<PreparedData> =>
  (data ??= await prepareData(path.join(dir, 'data'), 6, () => undefined))
const generator = (): Generator => ({ kind: 'c', binary: (build as { binary: string }).binary })

/** An MQTT 3.1.1 echo broker over mutual TLS: CONNACK, SUBACK, PUBACK for every QoS 1 publish,
 * then the message back to its sender (QoS 1 with the broker's own packet id) — except every
 * 10th (dropped after its PUBACK) and every 7th (delivered twice). */
async function faultyBroker(
  d: PreparedData,
): Promise<{ port: number; dropped: number; duplicated: number; close(): Promise<void> }> {
  const stats = { dropped: 0, duplicated: 0 }
  let n = 0
  const server = tls.createServer(
    { cert: d.serverTls.cert, key: d.serverTls.key, ca: d.ca.trustedPem, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      socket.setNoDelay(true)
      // every packet in two TLS records: the generator must put packets together again
      const send = (packet: mqttPacket.Packet): void => {
        const bytes = mqttPacket.generate(packet)
        const cut = Math.max(1, Math.floor(bytes.length / 2))
        socket.write(bytes.subarray(0, cut))
        socket.write(bytes.subarray(cut))
      }
      let nextId = 1
      const parser = mqttPacket.parser()
      parser.on('packet', (p) => {
        if (p.cmd === 'connect') send({ cmd: 'connack', returnCode: 0, sessionPresent: false })
        else if (p.cmd === 'subscribe')
          send({ cmd: 'suback', messageId: p.messageId, granted: p.subscriptions.map((s) => s.qos) })
        else if (p.cmd === 'publish') {
          if (p.qos === 1) send({ cmd: 'puback', messageId: p.messageId })
          n++
          if (n % 10 === 0) return void stats.dropped++
          const copies = n % 7 === 0 ? 2 : 1
          if (copies === 2) stats.duplicated++
          for (let i = 0; i < copies; i++) {
            send({
              cmd: 'publish',
              topic: p.topic,
              payload: p.payload,
              qos: p.qos,
              messageId: p.qos === 1 ? nextId : undefined,
              retain: false,
              dup: false,
            })
            nextId = (nextId % 65535) + 1
          }
        } else if (p.cmd === 'disconnect') socket.end()
      })
      socket.on('data', (b: Buffer) => parser.parse(b))
      socket.on('error', () => undefined)
    },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    get dropped() {
      return stats.dropped
    },
    get duplicated() {
      return stats.duplicated
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

t.test(
  'QoS 1 accounting: exactly the messages a broker dropped are lost and those it repeated duplicated',
  { skip },
  async (t) => {
    const d = await prepared()
    const broker = await faultyBroker(d)
    t.teardown(() => broker.close())
    const ids = d.toys.map((toy) => toy.id)
    const pool = await LoadPool.start(2, d.toysFile, d.ca.trustedPem, ids, generator())
    t.teardown(() => pool.close())
    await pool.setTarget(broker.port)
    const r = await pool.echo(ids.slice(0, 4), { qos: 1, window: 20, warmupMs: 100, measureMs: 500, drainMs: 2000 })
    t.ok(r.totals.sent > 100, `sent ${r.totals.sent}`)
    t.equal(r.totals.acked, r.totals.sent, 'every publish acknowledged')
    t.equal(r.totals.lost, broker.dropped, `lost ${r.totals.lost} = dropped ${broker.dropped}`)
    t.equal(r.totals.duplicates, broker.duplicated, `duplicated ${r.totals.duplicates}`)
    t.equal(r.totals.uniqueReceived, r.totals.acked - broker.dropped)
    t.equal(r.totals.stalled, 0)
    t.ok(r.latency.count > 0 && r.perSecond > 0, 'latency and rate measured')
    t.ok(r.cpu.totalPct >= 0 && Number.isFinite(r.cpu.maxProcessPct), 'its own CPU reported')
  },
)

t.test(
  'against Mosquitto: hold, connects, QoS 0 and QoS 1 echo without loss, a revoked toy refused',
  { skip: skip || (mosquittoVersion() ? false : 'Mosquitto not installed (apt-get install mosquitto)') },
  async (t) => {
    const d = await prepared()
    const mosquitto = new MosquittoUnderTest(d, path.join(dir, 'data'))
    await mosquitto.start()
    t.teardown(() => mosquitto.stop())
    const ids = d.toys.map((toy) => toy.id)
    const pool = await LoadPool.start(2, d.toysFile, d.ca.trustedPem, ids, generator())
    t.teardown(() => pool.close())
    const node = await LoadPool.start(1, d.toysFile, d.ca.trustedPem, ids)
    t.teardown(() => node.close())
    await pool.setTarget(mosquitto.port)
    await node.setTarget(mosquitto.port)

    const held = await pool.hold(ids.slice(0, 4), 2)
    t.equal(held.held, 4)
    t.same(held.refused, {})
    t.equal(await pool.isOpen(ids[0]!), true)
    await pool.release()
    t.equal(await pool.isOpen(ids[0]!), false, 'released')

    const c = await pool.connects(ids.slice(0, 4), { inFlight: 4, warmupMs: 100, measureMs: 500 })
    t.ok(c.perSecond > 0, `connects/s ${c.perSecond}`)
    t.same(c.failures, {})

    for (const qos of [0, 1] as const) {
      const r = await pool.echo(ids.slice(0, 4), { qos, window: 20, warmupMs: 100, measureMs: 500, drainMs: 10_000 })
      t.ok(r.totals.sent > 0 && r.latency.count > 0, `QoS ${qos}: sent ${r.totals.sent}`)
      t.same(
        { lost: r.totals.lost, duplicates: r.totals.duplicates, stalled: r.totals.stalled },
        { lost: 0, duplicates: 0, stalled: 0 },
        `QoS ${qos}: nothing lost or repeated`,
      )
      t.equal(r.totals.uniqueReceived, r.totals.sent)
    }

    // the held session closes when Mosquitto restarts; the revoked toy is then refused, and the C
    // generator names the refusal as the Node one does
    const revoked = d.toys[4]!
    await pool.hold([revoked.id], 1)
    const closed = pool.watch(revoked.id, 10_000)
    await mosquitto.revokeInCrl(revoked.serial)
    await mosquitto.restart()
    t.ok(Number.isFinite(await closed), 'the session closed')
    const outcome = await pool.tryConnect(revoked.id)
    t.match(outcome, /^closed before CONNACK/)
    // OpenSSL names the alert SSLV3_ALERT_… up to 3.0 (this machine's, which the C generator links)
    // and SSL/TLS_ALERT_… later (Node 22's own): the same alert either way
    const alert = (s: string): string => s.replace('SSL/TLS_ALERT', 'SSLV3_ALERT')
    t.equal(alert(outcome), alert(await node.tryConnect(revoked.id)), 'the same outcome as the Node generator')
    t.equal(await pool.tryConnect(ids[5]!), 'accepted')
  },
)

t.test(
  'the bench falls back to the Node generator with a labelled warning when the C one cannot be built',
  async (t) => {
    const { chooseGenerator } = await import('../../bench/compare.ts')
    const saved = { CC: process.env.CC, KENNEL_BENCH_CACHE: process.env.KENNEL_BENCH_CACHE }
    process.env.CC = path.join(dir, 'no-such-cc')
    process.env.KENNEL_BENCH_CACHE = path.join(dir, 'cache-fallback')
    t.teardown(() => {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
    })
    const said: string[] = []
    const choice = chooseGenerator('c', (s) => said.push(s))
    t.same(choice.generator, { kind: 'node' })
    t.match(choice.fallback, /apt-get install gcc libssl-dev/)
    t.match(choice.label, /^Node load generator \(FALLBACK: /)
    t.match(
      said.join('\n'),
      /WARNING: .*apt-get install gcc libssl-dev[\s\S]*WARNING: falling back to the Node load generator/,
    )
    t.same(chooseGenerator('node', () => undefined).generator, { kind: 'node' }, '--generator node')
  },
)
