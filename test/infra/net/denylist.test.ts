import t from 'tap'
import { compileDenylist } from '../../../infra/net/denylist.ts'

t.test('the denylist matches IPv4 and IPv6 CIDRs, single addresses and IPv4-mapped IPv6 peers', async (t) => {
  const denied = compileDenylist(['198.51.100.0/24', '203.0.113.7', '2001:db8::/32'])
  t.ok(denied('198.51.100.1'))
  t.ok(denied('198.51.100.255'))
  t.notOk(denied('198.51.101.1'))
  t.ok(denied('203.0.113.7'))
  t.notOk(denied('203.0.113.8'))
  t.ok(denied('::ffff:198.51.100.9'), 'IPv4-mapped IPv6')
  t.ok(denied('::FFFF:203.0.113.7'), 'IPv4-mapped IPv6, upper case')
  t.ok(denied('2001:db8:1::5'))
  t.notOk(denied('2001:db9::1'))
  t.notOk(denied(undefined))
  t.notOk(denied('not an ip'))
})

t.test('an empty denylist denies nothing', async (t) => {
  t.notOk(compileDenylist([])('198.51.100.1'))
})

t.test('a hit names the CIDR it matched, for the ConnectionDenylisted event', async (t) => {
  const denied = compileDenylist(['198.51.100.0/24', '203.0.113.7', '2001:db8::/32'])
  t.equal(denied('198.51.100.42'), '198.51.100.0/24')
  t.equal(denied('::ffff:203.0.113.7'), '203.0.113.7')
  t.equal(denied('2001:db8::1'), '2001:db8::/32')
  t.equal(denied('192.0.2.1'), undefined)
})
