import fs from 'node:fs'
import type { ZxcvbnFactory } from '@zxcvbn-ts/core'

// R15: length ≥ 10, not a common/breached password, not built from the product name or the
// e-mail, and strong enough for zxcvbn-ts (score ≥ 3). Each refusal says why. The shipped list
// (common-passwords.txt) stands in for a breached-password corpus; zxcvbn's own
// passwords-common dictionary covers far more of it. Its dictionaries take about 24 MB of heap
// once ranked, so they are loaded by the first password checked, not when the process starts.

export const MIN_LENGTH = 10
export const MIN_SCORE = 3
const PRODUCT = 'kennel'

const commonPasswords = new Set(
  fs
    .readFileSync(new URL('./common-passwords.txt', import.meta.url), 'utf8')
    .split('\n')
    .map((l) => l.trim().toLowerCase())
    .filter((l) => l !== '' && !l.startsWith('#')),
)

let zxcvbn: Promise<ZxcvbnFactory> | undefined
function strength(): Promise<ZxcvbnFactory> {
  zxcvbn ??= Promise.all([
    import('@zxcvbn-ts/core'),
    import('@zxcvbn-ts/language-common'),
    import('@zxcvbn-ts/language-en'),
  ]).then(
    ([{ ZxcvbnFactory }, common, en]) =>
      new ZxcvbnFactory({
        dictionary: { ...common.dictionary, ...en.dictionary },
        graphs: common.adjacencyGraphs,
        translations: en.translations,
      }),
  )
  return zxcvbn
}

const LEET: Record<string, string> = {
  '0': 'o',
  '1': 'l',
  '3': 'e',
  '4': 'a',
  '5': 's',
  '7': 't',
  '@': 'a',
  $: 's',
  '!': 'i',
}
const unleet = (s: string): string => s.replace(/[013457@$!]/g, (c) => LEET[c] ?? c)

/** the e-mail's words a password must not contain: the local part and its pieces, the domain's labels */
export function emailParts(email: string): string[] {
  const [local = '', domain = ''] = email.toLowerCase().split('@')
  const labels = domain.split('.').slice(0, -1)
  return [...new Set([local, ...local.split(/[._+-]+/), ...labels])].filter((p) => p.length >= 3)
}

/** undefined when acceptable, otherwise the reason */
export async function passwordProblem(password: string, email: string): Promise<string | undefined> {
  if ([...password].length < MIN_LENGTH) return `the password is too short: use at least ${MIN_LENGTH} characters`
  const lower = password.toLowerCase()
  if (commonPasswords.has(lower)) return 'the password is one of the most commonly used passwords'
  const plain = unleet(lower)
  if (lower.includes(PRODUCT) || plain.includes(PRODUCT))
    return `the password must not contain the product name "${PRODUCT}"`
  if (emailParts(email).some((part) => lower.includes(part) || plain.includes(unleet(part))))
    return 'the password must not contain your e-mail address or parts of it'
  const result = (await strength()).check(password, [PRODUCT, ...emailParts(email)])
  if (result.score < MIN_SCORE) {
    const hint = [result.feedback.warning, ...result.feedback.suggestions].filter(Boolean).join(' ')
    return `the password is too easy to guess (strength ${result.score}/4, at least ${MIN_SCORE} needed)${hint ? `: ${hint}` : ''}`
  }
  return undefined
}
