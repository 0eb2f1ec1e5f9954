import type { Mail } from '../../infra/mail/port.ts'

// The two mails a sign-up sends (R15). The answer to the sign-up is the same whether or not the
// address has an account; only its owner, in the mailbox, learns which it was. There is no link
// base URL in the configuration, so the mail names the API call that takes the token.

export function verificationMail(to: string, token: string, expiresAt: string): Mail {
  return {
    to,
    subject: 'Confirm your kennel account',
    text: [
      'Hello,',
      '',
      'someone asked to open a kennel account with this e-mail address.',
      'If it was you, confirm the address with this token (the kennel app',
      'does it for you when you paste it):',
      '',
      '    POST /v1/accounts/verify',
      `    {"token":"${token}"}`,
      '',
      `The token works once, until ${expiresAt}. If you signed up more`,
      "than once, only the newest mail's token works, and it sets the",
      'password you chose with that sign-up.',
      '',
      'If it was not you, ignore this mail: without the token no account',
      'is opened.',
    ].join('\n'),
  }
}

export function accountExistsMail(to: string): Mail {
  return {
    to,
    subject: 'You already have a kennel account',
    text: [
      'Hello,',
      '',
      'someone asked to open a kennel account with this e-mail address,',
      'but it already has one. Nothing was changed.',
      '',
      'If it was you, log in with your password instead.',
      'If it was not you, ignore this mail.',
    ].join('\n'),
  }
}
