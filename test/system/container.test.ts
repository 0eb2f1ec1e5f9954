import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import ts from 'typescript'
import { parse as parseYaml } from 'yaml'
import { configKeys, loadConfig } from '../../infra/config.ts'
import { Readiness } from '../../infra/ops/readiness.ts'
import { listenOps } from '../../infra/ops/server.ts'

// The Dockerfile and compose.yaml cannot be built or run here (no container registry is
// reachable), so this checks that what they name exists: the entry point is what the build
// produces, every KENNEL_* variable is a setting and each node's environment is one kennel
// accepts, the ports are the settings' ports, the roles make the documented cluster, the user is
// not root, the root file system is read-only, and the health checks ask a route that answers.

const root = path.resolve(import.meta.dirname, '../..')
const read = (file: string): string => fs.readFileSync(path.join(root, file), 'utf8')
const run = promisify(execFile)

// --- the Dockerfile, as far as these files use it --------------------------------------------

interface Instruction {
  keyword: string
  args: string
}
interface Stage {
  image: string
  name: string | undefined
  instructions: Instruction[]
}

function parseDockerfile(text: string): Stage[] {
  const logical: string[] = []
  let pending = ''
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line)) continue
    if (/\\\s*$/.test(line)) {
      pending += `${line.replace(/\\\s*$/, '')} `
      continue
    }
    const joined = (pending + line).trim()
    pending = ''
    if (joined !== '') logical.push(joined)
  }
  const args = new Map<string, string>()
  const stages: Stage[] = []
  for (const l of logical) {
    const m = /^([A-Za-z]+)\s+([\s\S]*)$/.exec(l)
    if (!m) throw new Error(`cannot read Dockerfile line: ${l}`)
    const keyword = m[1]!.toUpperCase()
    const rest = m[2]!
    if (keyword === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=')
      args.set(k!, v ?? '')
    } else if (keyword === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!
      stages.push({
        image: f[1]!.replace(/\$\{(\w+)\}/g, (_, k: string) => args.get(k) ?? ''),
        name: f[2],
        instructions: [],
      })
    } else {
      stages.at(-1)!.instructions.push({ keyword, args: rest })
    }
  }
  return stages
}

const all = (s: Stage, keyword: string): string[] =>
  s.instructions.filter((i) => i.keyword === keyword).map((i) => i.args)
const one = (s: Stage, keyword: string): string => {
  const found = all(s, keyword)
  if (found.length !== 1) throw new Error(`expected one ${keyword} in stage ${s.name}, found ${found.length}`)
  return found[0]!
}
const envOf = (s: Stage): Record<string, string> =>
  Object.fromEntries(
    all(s, 'ENV').flatMap((a) =>
      a
        .split(/\s+/)
        .filter(Boolean)
        .map((kv) => kv.split('=') as [string, string]),
    ),
  )

const stages = parseDockerfile(read('Dockerfile'))
const build = stages.find((s) => s.name === 'build')!
const runtime = stages.at(-1)!
const imageEnv = envOf(runtime)
const entrypoint = JSON.parse(one(runtime, 'ENTRYPOINT')) as string[]
const healthcheck = /^(.*?)\s*CMD\s+(\[.*\])$/s.exec(one(runtime, 'HEALTHCHECK'))
const imageUser = one(runtime, 'USER')

// --- compose.yaml --------------------------------------------------------------------------

interface Service {
  image?: string
  user?: string
  read_only?: boolean
  tmpfs?: string[]
  environment?: Record<string, string | number>
  ports?: string[]
  volumes?: string[]
  secrets?: string[]
  healthcheck?: { test: string[] }
  entrypoint?: string[]
}
const composeText = read('compose.yaml')
const compose = parseYaml(composeText, { merge: true }) as {
  services: Record<string, Service>
  secrets: Record<string, { file: string }>
  volumes: Record<string, unknown>
}

// the variables compose.yaml takes from .env, made as its header says (`NAME=$(openssl rand …)`)
const madeInEnvFile = new Set([...composeText.matchAll(/^#\s+([A-Z0-9_]+)=\$\(openssl rand /gm)].map((m) => m[1]!))
const standIns: Record<string, string> = {
  KENNEL_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'),
  MINIO_KMS_KEY: Buffer.alloc(32, 9).toString('base64'),
}
const interpolated = new Set<string>()
function interpolate(value: string): string {
  return value.replace(/\$\$|\$\{([A-Za-z0-9_]+)(?::?[-?][^}]*)?\}/g, (m, name: string | undefined) => {
    if (m === '$$') return '$'
    interpolated.add(name!)
    return standIns[name!] ?? '0123abcd'
  })
}

const kennelImage = 'kennel:local'
const nodes = Object.entries(compose.services).filter(([, s]) => s.image === kennelImage)
/** what kennel sees in a node: the image's ENV, then the service's environment */
const nodeEnv = (s: Service): Record<string, string> => ({
  ...imageEnv,
  ...Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))])),
})

// -----------------------------------------------------------------------------------------------

t.test('the image runs what the build produces: node dist/bin/kennel.js start', async (t) => {
  t.same(entrypoint, ['node', 'dist/bin/kennel.js'])
  t.same(JSON.parse(one(runtime, 'CMD')), ['start'])
  t.equal(one(runtime, 'WORKDIR'), '/app')
  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; engines: { node: string } }
  const buildSteps = all(build, 'RUN').join('\n')
  t.match(buildSteps, /npm ci\b/, 'the build stage installs from the lock file')
  t.match(buildSteps, /npm run build\b/, 'and builds')
  t.match(buildSteps, /npm prune --omit=dev\b/, 'and drops the development dependencies')
  t.ok(pkg.scripts.build, 'package.json has a build script')
  t.same(
    all(runtime, 'COPY')
      .map((c) => c.replace(/^--from=build\s+/, ''))
      .sort(),
    ['/app/dist ./dist', '/app/node_modules ./node_modules', '/app/package.json ./package.json'],
    'the runtime stage holds only dist/, node_modules and package.json, from the build stage',
  )
  for (const s of stages)
    t.match(
      s.image,
      /^node:(22|24)-bookworm-slim$/,
      `stage ${s.name}: a Node.js LTS that engines (${pkg.engines.node}) allows`,
    )

  const entryFile = path.join(root, entrypoint[1]!)
  const buildConfig = path.join(root, 'tsconfig.build.json')
  if (!fs.existsSync(buildConfig)) {
    // the build to dist/ is being introduced; until tsconfig.build.json exists, the source the
    // entry point is compiled from is what can be checked
    t.comment(
      'tsconfig.build.json does not exist yet: checked that bin/kennel.js, which the build compiles to dist/bin/kennel.js, exists',
    )
    t.ok(fs.existsSync(path.join(root, 'bin/kennel.js')), 'bin/kennel.js exists')
    return
  }
  const parsed = ts.getParsedCommandLineOfConfigFile(
    buildConfig,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => t.fail(ts.flattenDiagnosticMessageText(d.messageText, '\n')),
    },
  )!
  t.same(
    parsed.errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')),
    [],
    'tsconfig.build.json reads without errors',
  )
  const sources = parsed.fileNames.map((f) => path.resolve(f))
  const source = ['bin/kennel.ts', 'bin/kennel.js'].map((f) => path.join(root, f)).find((f) => sources.includes(f))
  t.ok(source, 'tsconfig.build.json compiles bin/kennel.ts or bin/kennel.js')
  if (!source) return
  const rootDir = parsed.options.rootDir ?? commonDirectory(sources)
  const emitted = path
    .join(parsed.options.outDir ?? path.dirname(source), path.relative(rootDir, source))
    .replace(/\.ts$/, '.js')
  t.equal(emitted, entryFile, `tsc emits ${path.relative(root, source)} as ${entrypoint[1]}, the ENTRYPOINT's file`)
  t.equal(pkg.scripts.start, `${entrypoint.join(' ')} start`, 'npm start runs what the image runs')
})

function commonDirectory(files: string[]): string {
  let dir = path.dirname(files[0]!)
  while (!files.every((f) => f.startsWith(`${dir}${path.sep}`))) dir = path.dirname(dir)
  return dir
}

t.test("every KENNEL_* variable the Dockerfile and compose.yaml name is one of kennel's settings", async (t) => {
  const settings = new Set(Object.values(configKeys).map((k) => k.env))
  for (const [file, text] of [
    ['Dockerfile', read('Dockerfile')],
    ['compose.yaml', composeText],
  ] as const) {
    const named = [...new Set(text.match(/\bKENNEL_[A-Z0-9_]+\b/g) ?? [])]
    t.ok(named.length > 0, `${file} names settings`)
    t.same(
      named.filter((n) => !settings.has(n)),
      [],
      `${file} names no variable kennel does not read`,
    )
  }
})

t.test('each kennel node of compose.yaml has a configuration kennel accepts, with valid roles', async (t) => {
  t.ok(nodes.length > 0, `services run the ${kennelImage} image`)
  for (const [name, s] of nodes) {
    const env = nodeEnv(s)
    t.ok(env.KENNEL_ROLES, `${name} says its roles`)
    t.doesNotThrow(() => loadConfig(env), `${name}: kennel's configuration accepts its environment`)
    t.same(
      configKeys.roles.parse(env.KENNEL_ROLES!, 'KENNEL_ROLES').join(','),
      env.KENNEL_ROLES,
      `${name}: roles ${env.KENNEL_ROLES} are known, in their order`,
    )
  }
  const references = composeText
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .matchAll(/(?<!\$)\$\{([A-Za-z0-9_]+)/g)
  const fromEnvFile = new Set([...interpolated, ...[...references].map((m) => m[1]!)])
  t.same(
    [...fromEnvFile].filter((v) => !madeInEnvFile.has(v)),
    [],
    'every ${VAR} compose.yaml reads from .env is made in its header',
  )
})

t.test(
  'compose.yaml is the cluster of docs/OPERATIONS.md: two broker,api nodes, two projectors, one store',
  async (t) => {
    const envs = nodes.map(([name, s]) => ({ name, env: nodeEnv(s), service: s }))
    t.same(envs.map((n) => n.env.KENNEL_ROLES).sort(), ['broker,api', 'broker,api', 'projector', 'projector'])
    const shared = [
      'KENNEL_ENV',
      'KENNEL_EVENTSTORE',
      'KENNEL_REDIS_URL',
      'KENNEL_CA_CERT',
      'KENNEL_CA_KEY',
      'KENNEL_TLS_CERT',
      'KENNEL_TLS_KEY',
      'KENNEL_MASTER_KEY',
      'KENNEL_AUDIT_KEY',
      'KENNEL_S3_BUCKET',
      'KENNEL_S3_ENDPOINT',
    ]
    for (const key of shared) {
      const values = new Set(envs.map((n) => n.env[key]))
      t.ok(values.size === 1 && !values.has(undefined), `every node is given the same ${key}`)
    }
    const store = new URL(envs[0]!.env.KENNEL_EVENTSTORE!)
    t.equal(store.protocol, 'postgres:', 'the nodes share PostgreSQL (the embedded store serves one node)')
    t.ok(store.searchParams.get('schema'), 'KENNEL_EVENTSTORE names its schema')
    const services = new Set(Object.keys(compose.services))
    t.ok(services.has(store.hostname), `the event store's host ${store.hostname} is a service`)
    t.ok(services.has(new URL(envs[0]!.env.KENNEL_REDIS_URL!).hostname), 'so is Redis')
    t.ok(services.has(new URL(envs[0]!.env.KENNEL_S3_ENDPOINT!).hostname), 'and the S3-compatible store')
    const bucket = envs[0]!.env.KENNEL_S3_BUCKET!
    t.ok(
      Object.values(compose.services).some((s) =>
        (s.entrypoint ?? []).join('\n').includes(`mc mb --ignore-existing local/${bucket}`),
      ),
      `a service creates the bucket ${bucket}`,
    )

    const dataVolumes = envs.map(({ name, env, service }) => {
      const mount = (service.volumes ?? []).find((v) => v.endsWith(`:${env.KENNEL_DATA_DIR}`))
      t.ok(mount, `${name} keeps KENNEL_DATA_DIR (${env.KENNEL_DATA_DIR}) on a volume`)
      const volume = mount?.split(':')[0] ?? ''
      t.ok(volume in compose.volumes, `${name}: the volume ${volume} is declared`)
      return volume
    })
    t.equal(new Set(dataVolumes).size, envs.length, 'each node has its own data directory')
  },
)

t.test(
  "the ports are the settings' ports: published by the roles that listen on them, never the metrics port",
  async (t) => {
    const defaults = [configKeys.mqttPort, configKeys.apiPort, configKeys.metricsPort].map(
      (k) => imageEnv[k.env] ?? k.default,
    )
    t.same(
      all(runtime, 'EXPOSE').join(' ').split(/\s+/),
      defaults,
      'EXPOSE: MQTT, API and operations listener at the ports kennel listens on in the image',
    )
    const hostPorts: string[] = []
    for (const [name, s] of nodes) {
      const env = nodeEnv(s)
      const config = loadConfig(env)
      const expected = [
        ...(config.roles.includes('broker') ? [String(config.mqttPort)] : []),
        ...(config.roles.includes('api') ? [String(config.apiPort)] : []),
      ]
      const published = (s.ports ?? []).map((p) => p.split(':'))
      t.same(
        published.map((p) => p.at(-1)).sort(),
        expected.sort(),
        `${name} (${env.KENNEL_ROLES}) publishes its listeners' container ports, and only those`,
      )
      t.notOk(
        published.some((p) => p.at(-1) === String(config.metricsPort)),
        `${name} does not publish the operations listener (R11)`,
      )
      for (const p of published)
        t.ok(defaults.includes(p.at(-1)!), `${name}: container port ${p.at(-1)} is one the image exposes`)
      hostPorts.push(...published.map((p) => p.slice(0, -1).join(':')))
    }
    t.equal(new Set(hostPorts).size, hostPorts.length, 'no host port is published twice')
  },
)

t.test('kennel runs as a numeric non-root user on a read-only root file system', async (t) => {
  const [uid, gid] = imageUser.split(':')
  t.match(imageUser, /^\d+:\d+$/, 'the image names its user by number (a runtime can check it is not root)')
  t.not(uid, '0', 'not root')
  t.not(gid, '0', "nor root's group")
  const dataDir = imageEnv.KENNEL_DATA_DIR!
  t.ok(path.isAbsolute(dataDir), 'the image sets an absolute KENNEL_DATA_DIR')
  t.ok((JSON.parse(one(runtime, 'VOLUME')) as string[]).includes(dataDir), 'and declares it a volume')
  t.match(
    all(runtime, 'RUN').join('\n'),
    new RegExp(`chown ${uid}:${gid} ${dataDir}\\b.*chmod 0700 ${dataDir}\\b`),
    'owned by that user, mode 0700',
  )
  for (const [name, s] of nodes) {
    t.equal(s.user, imageUser, `${name} runs as the image's user`)
    t.equal(s.read_only, true, `${name}: read-only root file system`)
    t.ok(s.tmpfs?.includes('/tmp'), `${name}: /tmp is a tmpfs`)
  }
})

t.test('the key files the nodes are given are secrets compose.yaml mounts, and never reach the image', async (t) => {
  for (const [name, s] of nodes) {
    for (const [key, value] of Object.entries(nodeEnv(s)).filter(([, v]) => v.startsWith('/run/secrets/'))) {
      const secret = value.slice('/run/secrets/'.length)
      t.ok(s.secrets?.includes(secret), `${name}: ${key} is the secret ${secret}, mounted`)
      t.match(compose.secrets[secret]?.file ?? '', /^\.\/secrets\//, `the secret ${secret} is a file under ./secrets`)
    }
  }
  const dockerignore = read('.dockerignore').split('\n')
  for (const entry of ['secrets', '.env', '**/node_modules'])
    t.ok(dockerignore.includes(entry), `.dockerignore keeps ${entry} out of the build`)
  const gitignore = read('.gitignore').split('\n')
  for (const entry of ['/secrets/', '/.env'])
    t.ok(gitignore.includes(entry), `.gitignore keeps ${entry} out of the repository`)
})

t.test('the health checks ask /readyz on the operations listener: 0 when ready, 1 when not', async (t) => {
  t.ok(healthcheck, 'the image has a HEALTHCHECK in exec form')
  const imageCheck = JSON.parse(healthcheck![2]!) as string[]
  t.match(healthcheck![1]!, /--start-period=\d+s/, 'with a start period for catching up')
  t.equal(imageCheck[0], 'node', 'run by node (the image has no curl)')
  for (const [name, s] of nodes) t.same(s.healthcheck?.test, ['CMD', ...imageCheck], `${name}: the same check`)

  const readiness = new Readiness()
  let ready = true
  readiness.add({ name: 'test', check: async () => ({ ok: ready }) })
  const ops = await listenOps({ host: '127.0.0.1', port: 0, registries: [], readiness })
  t.teardown(() => ops.close())
  const exitCode = (env: Record<string, string>): Promise<number> =>
    run(process.execPath, imageCheck.slice(1), { env: { PATH: process.env.PATH ?? '', ...env } }).then(
      () => 0,
      (err: { code?: number }) => err.code ?? -1,
    )
  const port = String(ops.port)
  const composeMetricsHost = nodeEnv(nodes[0]![1]).KENNEL_METRICS_HOST!
  t.equal(
    await exitCode({ KENNEL_METRICS_PORT: port }),
    0,
    "ready, with the image's default (loopback) operations listener",
  )
  t.equal(
    await exitCode({ KENNEL_METRICS_HOST: composeMetricsHost, KENNEL_METRICS_PORT: port }),
    0,
    `ready, with compose.yaml's KENNEL_METRICS_HOST=${composeMetricsHost} (asked on loopback)`,
  )
  ready = false
  t.equal(await exitCode({ KENNEL_METRICS_PORT: port }), 1, 'not ready: 503 is unhealthy')
  await ops.close()
  t.equal(await exitCode({ KENNEL_METRICS_PORT: port }), 1, 'nothing listening: unhealthy')
})
