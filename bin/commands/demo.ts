import fs from 'node:fs'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'
import type { Command } from 'commander'
import mqtt from 'mqtt'
import { loadConfig } from '../../infra/config.ts'
import { createLogger } from '../../infra/log.ts'
import { enrollDevice } from '../../devices/enroll.ts'
import { connectToy } from '../../devices/simulator/toy.ts'
import { action } from '../context.ts'
import { grantRole } from './account.ts'
import { findVerificationToken } from '../../api/accounts/tokens.ts'
import { outboxDir, readOutbox } from '../../infra/mail/outbox.ts'

// `kennel demo`: a scripted tour of the whole system, on a throw-away data dir and free ports so
// it never touches ./data or a running server. Each step is a real action over real mTLS MQTT
// and HTTPS; each refusal shown is the real refusal.

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'a scripted tour: toys connect over mutual TLS, a parent pairs one, an attack is refused, ops revokes a toy, an auditor verifies the log',
    )
    .option('--keep', 'keep the temporary data dir and print its path')
    .action(action(async (opts: { keep?: boolean }) => runDemo(opts.keep === true)))
}

const say = (text: string): void => void process.stdout.write(`${text}\n`)

async function runDemo(keep: boolean): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-demo-'))
  const config = loadConfig({
    ...process.env,
    KENNEL_ENV: 'development',
    KENNEL_DATA_DIR: dir,
    KENNEL_EVENTSTORE: 'sqlite:',
    KENNEL_MQTT_PORT: '0',
    KENNEL_API_PORT: '0',
    KENNEL_METRICS_PORT: '0',
    KENNEL_LOG_LEVEL: 'silent',
  })
  const { everyRole, startKennel } = await import('../start.ts')
  const kennel = everyRole(await startKennel(config, createLogger('silent')))
  const ca = kennel.ca.trustedPem
  const url = `mqtts://localhost:${kennel.ports.mqtt}`
  try {
    say(
      `1. kennel started on a fresh development data dir: MQTT (mTLS) :${kennel.ports.mqtt}, HTTPS API :${kennel.ports.api}`,
    )

    const deps = { store: kennel.store, ca: kennel.ca, config, actor: 'cli:demo' }
    const [teddy, bunny, robot] = await Promise.all(
      ['demo-teddy', 'demo-bunny', 'demo-robot'].map((id) => enrollDevice(deps, id)),
    )
    say(
      '2. three toys enrolled, each with its own P-256 key and certificate (keys generated here for the demo; real toys send a CSR)',
    )

    const toys = await Promise.all([teddy!, bunny!, robot!].map((c) => connectToy(url, c)))
    await Promise.all(toys.map((toy, i) => toy.publishTelemetry(i)))
    say('3. the toys connected over mutual TLS and published telemetry on their own topics')

    const attacker = toys[1]!
    // mqtt.js rejects a refused subscription; the SUBACK codes are on the error's packet
    const suback = await attacker.client.subscribeAsync('toys/demo-teddy/#', { qos: 1 }).then(
      (granted) => granted.map((g) => g.qos),
      (err: { packet?: { granted?: number[] } }) => err.packet?.granted ?? [],
    )
    say(
      `4. attack: demo-bunny subscribes to demo-teddy's topics → SUBACK ${suback.map((c) => `0x${c.toString(16)}`).join(',')} (0x80 = refused)`,
    )
    const anonymous = await new Promise<string>((resolve) => {
      const c = mqtt.connect(url, { ca, clientId: 'demo-teddy', reconnectPeriod: 0, connectTimeout: 5000 })
      c.once('connect', () => (c.end(true), resolve('connected (unexpected!)')))
      c.once('error', (err) => (c.end(true), resolve(`refused: ${err.message}`)))
      c.once('close', () => resolve('refused: closed before CONNACK'))
    })
    say(`   attack: a client without a certificate claims to be demo-teddy → ${anonymous}`)

    const api = (method: string, p: string, body?: unknown, token?: string) =>
      call(kennel.ports.api, ca, method, p, body, token)
    const weak = await api('POST', '/v1/accounts', { email: 'parent@demo.example', password: 'kennel12345' })
    say(`5. a parent signs up with "kennel12345" → ${weak.status} ${weak.json.error?.message ?? ''}`)
    const password = 'violet-Harbour-43-quiet-Lantern'
    // sign up, then confirm the address with the token from the mail in the development outbox
    const signUp = async (email: string): Promise<{ signup: number; confirmed: number; mail: string }> => {
      const signup = (await api('POST', '/v1/accounts', { email, password })).status
      const mail = readOutbox(outboxDir(dir))
        .filter((m) => m.headers.to === email)
        .at(-1)
      const confirmed = (await api('POST', '/v1/accounts/verify', { token: findVerificationToken(mail?.text ?? '') }))
        .status
      return { signup, confirmed, mail: mail ? path.relative(dir, mail.file) : 'none' }
    }
    const parent = await signUp('parent@demo.example')
    say(
      `   with a strong password → ${parent.signup}; the confirmation mail (${parent.mail}) carries a token → confirmed ${parent.confirmed}`,
    )
    const again = await api('POST', '/v1/accounts', { email: 'parent@demo.example', password })
    say(
      `   signing up again with the same address → ${again.status} ${JSON.stringify(again.json)}: the same answer as for a new address; the mailbox is told instead`,
    )
    const token = (await api('POST', '/v1/sessions', { email: 'parent@demo.example', password })).json.token as string
    const household = (await api('POST', '/v1/households', { name: 'The Demo family' }, token)).json
      .householdId as string
    const paired = await api('POST', `/v1/households/${household}/devices`, { claimCode: teddy!.claimCode }, token)
    say(`   the parent logs in, creates a household and pairs demo-teddy with its claim code → ${paired.status}`)
    const reused = await api('POST', `/v1/households/${household}/devices`, { claimCode: teddy!.claimCode }, token)
    say(`   the same claim code again → ${reused.status} ${reused.json.error?.code ?? ''}`)

    await signUp('ops@demo.example')
    await grantRole({ config, store: kennel.store, actor: 'cli:demo' }, 'ops@demo.example', 'ops')
    await new Promise((r) => setTimeout(r, 100))
    const opsToken = (await api('POST', '/v1/sessions', { email: 'ops@demo.example', password })).json.token as string
    const started = performance.now()
    const revoked = api('POST', '/v1/ops/devices/demo-robot/revoke', { reason: 'reported stolen' }, opsToken)
    await toys[2]!.closed
    say(
      `6. ops revokes demo-robot (${(await revoked).status}); its live MQTT session closed after ${(performance.now() - started).toFixed(0)} ms`,
    )
    const reconnect = await connectToy(url, robot!).then(
      async (t) => (await t.end(), 'connected (unexpected!)'),
      (err: Error) => `refused: ${err.message}`,
    )
    say(`   demo-robot reconnects → ${reconnect}`)

    await signUp('auditor@demo.example')
    await grantRole({ config, store: kennel.store, actor: 'cli:demo' }, 'auditor@demo.example', 'auditor')
    await new Promise((r) => setTimeout(r, 100))
    const auditor = (await api('POST', '/v1/sessions', { email: 'auditor@demo.example', password })).json
      .token as string
    const verify = await api('GET', '/v1/audit/verify', undefined, auditor)
    say(`7. an auditor verifies the tamper-evident log → ${verify.status} ${JSON.stringify(verify.json).slice(0, 120)}`)
    const report = await api(
      'POST',
      '/v1/audit/breach-reports',
      {
        credential: 'device:demo-robot',
        since: new Date(Date.now() - 3600_000).toISOString(),
        until: new Date(Date.now() + 60_000).toISOString(),
      },
      auditor,
    )
    say(`   breach report for the stolen demo-robot → ${report.status}, ${JSON.stringify(report.json).length} bytes`)

    await Promise.all(toys.slice(0, 2).map((t) => t.end()))
    const events = await kennel.store.readAll()
    const counts = new Map<string, number>()
    for (const e of events) counts.set(e.type, (counts.get(e.type) ?? 0) + 1)
    say(`8. every step above is an event: ${events.length} in all`)
    say(
      [...counts]
        .sort((a, b) => b[1] - a[1])
        .map(([type, n]) => `   ${String(n).padStart(4)}  ${type}`)
        .join('\n'),
    )
    say(
      keep
        ? `data kept in ${dir} (KENNEL_DATA_DIR=${dir} npx kennel events tail)`
        : 'done; the temporary data dir is removed',
    )
  } finally {
    await kennel.stop()
    if (!keep) fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** one HTTPS request to a kennel API on localhost, with its JSON answer (the demo, the cluster bench) */
export function call(
  port: number,
  ca: string,
  method: string,
  p: string,
  body?: unknown,
  token?: string,
  // biome-ignore lint/suspicious/noExplicitAny: the demo reads fields of the API's JSON answers as it shows them
): Promise<{ status: number; json: any }> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port,
        method,
        path: p,
        ca,
        headers: {
          ...(payload ? { 'content-type': 'application/json' } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
      },
      (res) => {
        let text = ''
        res.on('data', (c) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : {} }))
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}
