import { loadConfig } from '../../config.ts'
import { isKennelError } from '../../errors.ts'
import { isSecretRef, items, type EnvValue, type Problem, type Rule } from '../definition.ts'

// R8: production runs as production, and no secret is written into the definition: each comes
// from the secret store by reference. CloudPets mixed live and development systems.

/** what a secret reference stands for when the environment is validated: a base64 32-byte value fits every key */
const STAND_IN = Buffer.alloc(32, 7).toString('base64')
const TEMPLATE_STAND_IN = 'stand-in'

function standIn(v: EnvValue): string {
  if (typeof v === 'string') return v
  return typeof v.template === 'string' ? v.template.replaceAll('{secret}', TEMPLATE_STAND_IN) : STAND_IN
}

export const envProduction: Rule = {
  id: 'env-production',
  requirement: 'R8',
  prevents: 'live and development systems and data mixed together',
  holds: "every service runs with KENNEL_ENV=production and an environment kennel's own production validation accepts",
  check: (d) => {
    const problems: Problem[] = d.environment === 'production' ? [] : [{ path: 'environment', message: `must be production (got ${d.environment ?? 'nothing'})` }]
    const services = items(d.services, 'services')
    if (services.length === 0) problems.push({ path: 'services', message: 'no services: nothing runs kennel' })
    for (const [s, p] of services) {
      const env = s.environment ?? {}
      if (env.KENNEL_ENV !== 'production') problems.push({ path: `${p}.environment.KENNEL_ENV`, message: `must be production (got ${JSON.stringify(env.KENNEL_ENV ?? null)})` })
      // the same check `kennel start` runs, so the definition cannot drift from R7/R8's refusals
      try {
        loadConfig(Object.fromEntries(Object.entries(env).map(([k, v]) => [k, standIn(v)])))
      } catch (err) {
        if (!isKennelError(err)) throw err
        problems.push({ path: `${p}.environment`, message: `kennel would refuse to start: ${err.message}` })
      }
    }
    return problems
  },
}

// names that end in one of these hold a secret (masterUserPassword, authToken, secret, …)
const SENSITIVE_KEY = /(password|passwd|secret|token|private_?key|access_?key|credentials?)$/i
// the variables that name key files: the file must come from the secret store, mode 0600 or 0400
const KEY_FILE_VARS = ['KENNEL_TLS_KEY', 'KENNEL_CA_KEY', 'KENNEL_AUDIT_KEY']
const SECRET_VARS = ['KENNEL_MASTER_KEY']

/** `scheme://user:password@…` where the password is not the `{secret}` placeholder */
function inlinePassword(value: string): boolean {
  const password = /^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*:([^/@\s]+)@/i.exec(value)?.[1]
  return password !== undefined && password !== '{secret}'
}

function inlineSecrets(value: unknown, path: string, key: string, out: Problem[]): void {
  if (typeof value === 'string') {
    if (SENSITIVE_KEY.test(key) && !isSecretRef(value)) out.push({ path, message: 'a secret written inline; reference the secret store (arn:aws:secretsmanager:… or arn:aws:ssm:…)' })
    else if (value.includes('-----BEGIN')) out.push({ path, message: 'PEM material written inline' })
    else if (inlinePassword(value)) out.push({ path, message: 'a URL with an inline password; write {secret} and reference the secret store' })
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => inlineSecrets(v, `${path}[${i}]`, key, out))
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) inlineSecrets(v, path === '' ? k : `${path}.${k}`, k, out)
  }
}

export const noInlineSecrets: Rule = {
  id: 'no-inline-secrets',
  requirement: 'R8',
  prevents: 'default or shared secrets, and credentials sitting next to the data they protect',
  holds: 'passwords, tokens, keys and key files come from the secret store by reference; nothing secret is inline',
  check: (d) => {
    const problems: Problem[] = []
    inlineSecrets(d, '', '', problems)
    for (const [s, p] of items(d.services, 'services')) {
      const env = s.environment ?? {}
      for (const name of SECRET_VARS) {
        const v = env[name]
        if (typeof v !== 'object' || !isSecretRef(v.secret)) problems.push({ path: `${p}.environment.${name}`, message: 'must be {"secret": "<secret-store ARN>"}' })
      }
      const files = items(s.secretFiles, `${p}.secretFiles`)
      for (const name of KEY_FILE_VARS) {
        const file = files.find(([f]) => f.path === env[name])?.[0]
        if (file === undefined || !isSecretRef(file.secret) || !['0600', '0400'].includes(file.mode ?? '')) {
          problems.push({ path: `${p}.environment.${name}`, message: 'must name a file listed in secretFiles, from the secret store, mode 0600 or 0400' })
        }
      }
    }
    return problems
  },
}
