import { loadConfig, publicUrlOf } from '../../../config.ts'
import { isKennelError } from '../../../errors.ts'
import { exportsOf, list, obj, ofType, render, target, type Container, type Json } from '../template.ts'
import type { Control, Problem } from './facts.ts'

// R8: production runs as production, with an environment kennel's own start-up validation
// accepts, and no secret is written into the template: each comes from Secrets Manager by
// reference. CloudPets mixed live and development systems and kept credentials beside the data.

/** what a container secret stands for when kennel's configuration is validated (kennel judges the real value when it starts): base64 of 32 bytes fits every key */
const SECRET_STAND_IN = Buffer.alloc(32, 7).toString('base64')
/** secrets kennel parses as URLs stand in as a URL of the kind production accepts */
const URL_STAND_INS: Record<string, string> = { KENNEL_SMTP_URL: 'smtps://stand-in:stand-in@smtp.invalid:465' }

/** a value as kennel would see it, references (`Ref`, `Fn::GetAtt`) as host-name-safe words so URLs around them still parse; literal text stays as it is (`kennel <no-reply@…>`) */
function standIn(v: Json): string {
  const join = obj(v)['Fn::Join']
  if (Array.isArray(join) && typeof join[0] === 'string') return list(join[1]).map(standIn).join(join[0])
  return target(v) === undefined
    ? render(v)
    : `ref-${render(v)
        .slice(1, -1)
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, '-')}`
}

/** the environment `kennel start` sees: the task's variables and secrets, then the entrypoint's exports expanded */
function processEnvironment(c: Container): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(c.environment)) env[k] = standIn(v)
  for (const k of Object.keys(c.secrets)) env[k] = URL_STAND_INS[k] ?? SECRET_STAND_IN
  for (const [k, v] of Object.entries(exportsOf(c)))
    env[k] = v.replace(/\$(\w+)/g, (_, name: string) => env[name] ?? '')
  return env
}

export const envProduction: Control = {
  id: 'env-production',
  requirement: 'R8',
  holds:
    "every kennel container runs with KENNEL_ENV=production, an environment kennel's own production validation accepts (SMTP relay and sender included) and KENNEL_PUBLIC_URL set",
  check: (f) => {
    if (f.kennel.length === 0) return [{ path: 'Resources', message: 'no ECS container runs kennel' }]
    return f.kennel.flatMap((c): Problem[] => {
      const env = processEnvironment(c)
      if (env.KENNEL_ENV !== 'production')
        return [{ path: `${c.path}.KENNEL_ENV`, message: `must be production (got ${env.KENNEL_ENV ?? 'nothing'})` }]
      // the same check `kennel start` runs, so the stack cannot drift from R7/R8's refusals
      try {
        const config = loadConfig(env)
        // behind the load balancer the listeners' own address is no origin a client reaches:
        // security.txt's Canonical (R10) and the API's URLs (R5) would point nowhere
        if (config.publicUrl === undefined)
          return [
            {
              path: `${c.path}.Environment.KENNEL_PUBLIC_URL`,
              message: `must be set: kennel would hand out ${publicUrlOf(config, config.apiPort)}, its listeners' address`,
            },
          ]
        return []
      } catch (err) {
        return [
          {
            path: `${c.path}.Environment`,
            message: `kennel would refuse to start: ${isKennelError(err) ? err.message : String(err)}`,
          },
        ]
      }
    })
  },
}

// names that hold a secret (KENNEL_MASTER_KEY, *_PASSWORD, *_TOKEN, …); KENNEL_S3_KMS_KEY_ID names a key, it is none
const SENSITIVE_VARIABLE = /(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIALS?|MASTER_KEY|PRIVATE_KEY|ACCESS_KEY)$/i
// kennel settings that name a private key file: the file must be written from a container secret, mode 0600
const KEY_FILE_SETTINGS = ['KENNEL_TLS_KEY', 'KENNEL_CA_KEY', 'KENNEL_AUDIT_KEY']
// resource properties that hold a secret (MasterUserPassword, AuthToken, …)
const SENSITIVE_PROPERTY = /(password|passwd|secret|token|privatekey|credentials?)$/i
const INLINE_PASSWORD = /^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*:([^/@\s]+)@/i

function walk(v: Json | undefined, path: string, key: string, out: Problem[]): void {
  if (typeof v === 'string') {
    if (v.includes('-----BEGIN')) out.push({ path, message: 'PEM material written into the template' })
    else if (SENSITIVE_PROPERTY.test(key) && v !== '' && !v.startsWith('{{resolve:'))
      out.push({ path, message: 'a secret written into the template; use a {{resolve:secretsmanager:…}} reference' })
  } else if (Array.isArray(v)) {
    v.forEach((x, i) => walk(x, `${path}[${i}]`, key, out))
  } else if (typeof v === 'object' && v !== null) {
    if (Object.keys(v).some((k) => k === 'Ref' || k.startsWith('Fn::'))) {
      if (SENSITIVE_PROPERTY.test(key) && !render(v).startsWith('{{resolve:'))
        out.push({ path, message: 'a secret built in the template; use a {{resolve:secretsmanager:…}} reference' })
      return
    }
    for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`, k, out)
  }
}

/** the key files the entrypoint writes (umask 077 first), each from a container secret */
function keyFiles(c: Container): Map<string, string> {
  const script = c.command.join('\n')
  const umask = script.search(/^umask 0?077$/m)
  const files = new Map<string, string>()
  for (const m of script.matchAll(/^printf '%s\\n' "\$(\w+)" > (\S+)$/gm)) {
    if (umask >= 0 && umask < (m.index ?? 0) && c.secrets[m[1]!] !== undefined) files.set(m[2]!, m[1]!)
  }
  return files
}

export const noInlineSecrets: Control = {
  id: 'no-inline-secrets',
  requirement: 'R8',
  holds:
    'passwords, tokens and keys come from Secrets Manager by reference; private keys reach kennel as 0600 files written from container secrets; nothing secret is in the template',
  check: (f) => {
    const problems: Problem[] = []
    for (const [id, r] of Object.entries(f.template.Resources ?? {}))
      walk(obj(r.Properties), `${id}.Properties`, '', problems)
    for (const [id, p] of ofType(f.template, 'AWS::SecretsManager::Secret')) {
      if (p.SecretString !== undefined)
        problems.push({
          path: `${id}.SecretString`,
          message:
            'a secret value written into the template; generate it (GenerateSecretString) or set it outside CloudFormation',
        })
    }
    for (const c of f.kennel) {
      for (const [name, value] of Object.entries(c.environment)) {
        const text = render(value)
        if (SENSITIVE_VARIABLE.test(name))
          problems.push({
            path: `${c.path}.Environment.${name}`,
            message: 'a secret in the plain environment; use the container secrets (Secrets Manager)',
          })
        else if (INLINE_PASSWORD.test(text))
          problems.push({
            path: `${c.path}.Environment.${name}`,
            message: 'a URL with a password in the plain environment; compose it from a container secret',
          })
      }
      if (c.secrets.KENNEL_MASTER_KEY === undefined)
        problems.push({ path: `${c.path}.Secrets`, message: 'KENNEL_MASTER_KEY must be a container secret' })
      const files = keyFiles(c)
      for (const name of KEY_FILE_SETTINGS) {
        const file = c.environment[name]
        if (file === undefined || !files.has(render(file)))
          problems.push({
            path: `${c.path}.Environment.${name}`,
            message: 'must name a file the entrypoint writes from a container secret under umask 077',
          })
      }
    }
    return problems
  },
}
