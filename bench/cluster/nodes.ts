import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { type DeviceCa, loadDeviceCa } from '../../devices/ca.ts'
import { loadServerTls } from '../../devices/server-tls.ts'
import { type Config, loadConfig } from '../../infra/config.ts'
import { auditSigner } from '../../projections/catalogue.ts'

// A cluster on one machine, as an operator runs one (docs/OPERATIONS.md): `kennel start`
// processes with their own KENNEL_ROLES and data directories on one PostgreSQL schema and one
// Redis, sharing the device CA, the server certificate, the master key and the audit key through
// their settings. Used by test/system/cluster.test.ts and `npm run bench -- cluster`.

const bin = path.resolve(import.meta.dirname, '../../bin/kennel.js')

export interface ClusterMaterial {
  /** the settings every node shares */
  env: Record<string, string>
  /** a configuration of the cluster for in-process work (enrolment, rebuilds) */
  config: Config
  ca: DeviceCa
}

/** make the shared material in `root` once, as an operator would, for the store at `eventStoreUrl` */
export async function clusterMaterial(
  root: string,
  eventStoreUrl: string,
  redisUrl: string,
  extra: Record<string, string> = {},
): Promise<ClusterMaterial> {
  const seed = loadConfig({
    KENNEL_ENV: 'test',
    KENNEL_DATA_DIR: path.join(root, 'seed'),
    KENNEL_EVENTSTORE: eventStoreUrl,
    KENNEL_LOG_LEVEL: 'silent',
  })
  const ca = await loadDeviceCa(seed)
  await loadServerTls(seed, ca)
  auditSigner(seed)
  // KENNEL_CA_CERT is the chain: the issuing (device) CA first, then the root
  const caRoot = path.join(seed.dataDir, 'ca')
  const deviceCaDir = path.join(caRoot, fs.readFileSync(path.join(caRoot, 'current'), 'utf8').trim())
  const rootCaDir = fs
    .readdirSync(caRoot)
    .map((d) => path.join(caRoot, d))
    .find(
      (d) =>
        fs.existsSync(path.join(d, 'ca.json')) &&
        (JSON.parse(fs.readFileSync(path.join(d, 'ca.json'), 'utf8')) as { role: string }).role === 'root',
    )
  if (!rootCaDir) throw new Error(`no root CA in ${caRoot}`)
  const chainFile = path.join(root, 'ca-chain.pem')
  fs.writeFileSync(
    chainFile,
    fs.readFileSync(path.join(deviceCaDir, 'ca.crt'), 'utf8') + fs.readFileSync(path.join(rootCaDir, 'ca.crt'), 'utf8'),
  )
  const serverPem = fs.readFileSync(path.join(seed.dataDir, 'tls', 'server.pem'), 'utf8')
  const serverKey = path.join(root, 'server.key')
  const serverCert = path.join(root, 'server.crt')
  fs.writeFileSync(
    serverKey,
    `${/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(serverPem)![0]}\n`,
    { mode: 0o600 },
  )
  fs.writeFileSync(serverCert, serverPem.slice(serverPem.indexOf('-----BEGIN CERTIFICATE-----')))
  const env = {
    PATH: process.env.PATH ?? '',
    KENNEL_ENV: 'test',
    KENNEL_EVENTSTORE: eventStoreUrl,
    KENNEL_REDIS_URL: redisUrl,
    KENNEL_CA_CERT: chainFile,
    KENNEL_CA_KEY: path.join(deviceCaDir, 'ca.key'),
    KENNEL_TLS_CERT: serverCert,
    KENNEL_TLS_KEY: serverKey,
    KENNEL_MASTER_KEY: randomBytes(32).toString('base64'),
    KENNEL_AUDIT_KEY: path.join(seed.dataDir, 'audit', 'signing-key.pem'),
    KENNEL_MQTT_PORT: '0',
    KENNEL_API_PORT: '0',
    KENNEL_METRICS_PORT: '0',
    KENNEL_LOG_LEVEL: 'warn',
    ...extra,
  }
  return {
    env,
    config: loadConfig({ ...env, KENNEL_DATA_DIR: path.join(root, 'seed'), KENNEL_LOG_LEVEL: 'silent' }),
    ca,
  }
}

export interface ClusterNode {
  name: string
  dir: string
  env: Record<string, string>
  process: ChildProcess
  ports: { mqtt?: number; api?: number; metrics?: number }
  output(): string
  kill9(): Promise<void>
  stop(): Promise<number | null>
}

/** `kennel start` with `roles`, its own data dir under `root`, and the shared settings */
export async function startClusterNode(
  t: { teardown(fn: () => unknown): void },
  material: ClusterMaterial,
  root: string,
  name: string,
  roles: string,
  extra: Record<string, string> = {},
): Promise<ClusterNode> {
  const dir = path.join(root, name)
  fs.mkdirSync(dir, { mode: 0o700, recursive: true })
  return spawnKennel(t, name, { ...material.env, HOME: dir, KENNEL_DATA_DIR: dir, KENNEL_ROLES: roles, ...extra })
}

/** `node bin/kennel.js start` (the sources) as a child with `env`, resolved once it has printed
 * its listeners; killed at teardown */
export async function spawnKennel(
  t: { teardown(fn: () => unknown): void },
  name: string,
  env: Record<string, string>,
): Promise<ClusterNode> {
  const child = spawn(process.execPath, [bin, 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  const ports = await new Promise<ClusterNode['ports']>((resolve, reject) => {
    const found: ClusterNode['ports'] = {}
    createInterface({ input: child.stderr! }).on('line', (line) => {
      output += `${line}\n`
      found.mqtt ??= Number(/MQTT over mutual TLS: mqtts:\/\/localhost:(\d+)/.exec(line)?.[1]) || undefined
      found.api ??= Number(/HTTPS API: +https:\/\/localhost:(\d+)/.exec(line)?.[1]) || undefined
      found.metrics ??= Number(/metrics, health: +http:\/\/[\d.]+:(\d+)\/metrics/.exec(line)?.[1]) || undefined
      if (line.startsWith('Next:')) resolve(found)
    })
    void exited.then((code) => reject(new Error(`${name} exited with ${code} before listening:\n${output}`)))
  })
  return {
    name,
    dir: env.KENNEL_DATA_DIR ?? '',
    env,
    process: child,
    ports,
    output: () => output,
    async kill9() {
      child.kill('SIGKILL')
      await exited
    },
    async stop() {
      child.kill('SIGTERM')
      return exited
    },
  }
}

/** one figure from a node's /metrics (the first series of that name), undefined when absent */
export async function nodeMetric(node: ClusterNode, name: string): Promise<number | undefined> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${node.ports.metrics}/metrics`, (res) => {
        let body = ''
        res.on('data', (c) => (body += c))
        res.on('end', () => resolve(body))
      })
      .on('error', reject)
  })
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
  return line === undefined ? undefined : Number(line.split(' ').at(-1))
}
