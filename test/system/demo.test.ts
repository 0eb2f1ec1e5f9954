import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'

// `kennel demo` is what a newcomer runs first: every step must happen for real, every attack
// must be refused, and it must leave nothing behind.

t.test('kennel demo walks through enrolment, an attack, pairing, revocation and audit', async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/kennel.js', 'demo'], {
    env: { ...process.env, KENNEL_DATA_DIR: '/nonexistent-kennel-demo-check' },
    timeout: 120_000,
  })
  t.match(stdout, /3\. the toys connected over mutual TLS/)
  t.match(stdout, /demo-bunny subscribes to demo-teddy's topics → SUBACK 0x80/, 'cross-toy subscription refused')
  t.match(stdout, /without a certificate claims to be demo-teddy → refused/, 'certificate-less client refused')
  t.match(stdout, /"kennel12345" → 400 .*kennel/, 'weak password refused with its reason')
  t.match(
    stdout,
    /with a strong password → 202; the confirmation mail \(outbox\/[^)]+\.eml\) carries a token → confirmed 200/,
    'sign-up is confirmed from the outbox',
  )
  t.match(
    stdout,
    /signing up again with the same address → 202 \{"status":"verification-pending"\}/,
    'a known address is answered like a new one',
  )
  t.match(stdout, /pairs demo-teddy with its claim code → 201/)
  t.match(stdout, /the same claim code again → 409 KENNEL_ERR_CLAIM_CODE_USED/)
  t.match(stdout, /ops revokes demo-robot \(200\); its live MQTT session closed/)
  t.match(stdout, /demo-robot reconnects → refused/)
  t.match(stdout, /verifies the tamper-evident log → 200 \{"ok":true/)
  t.match(stdout, /\d+ +DeviceRevoked/)
  t.match(stdout, /temporary data dir is removed/)
})
