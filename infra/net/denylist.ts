import { BlockList, isIPv4, isIPv6 } from 'node:net'

// R9: known scanners and bad actors are refused when the TCP connection is accepted, before
// TLS, on the broker and the API alike. node:net's BlockList does the CIDR arithmetic;
// IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`, what a dual-stack listener reports) are matched
// against the IPv4 rules too.

/** the configured CIDR an address falls in, or undefined */
export type Denylist = (ip: string | undefined) => string | undefined

const MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList()
  for (const cidr of cidrs) {
    const [addr = '', bits] = cidr.split('/')
    const type = isIPv4(addr) ? 'ipv4' : 'ipv6'
    if (bits === undefined) list.addAddress(addr, type)
    else list.addSubnet(addr, Number(bits), type)
  }
  return list
}

export function compileDenylist(cidrs: readonly string[]): Denylist {
  if (cidrs.length === 0) return () => undefined
  const all = blockList(cidrs)
  const each = cidrs.map((cidr) => [cidr, blockList([cidr])] as const)
  const check = (list: BlockList, ip: string): boolean => {
    const mapped = MAPPED.exec(ip)
    if (mapped) return list.check(mapped[1]!, 'ipv4') || list.check(ip, 'ipv6')
    if (isIPv4(ip)) return list.check(ip, 'ipv4')
    if (isIPv6(ip)) return list.check(ip, 'ipv6')
    return false
  }
  return (ip) => {
    if (!ip || !check(all, ip)) return undefined
    return each.find(([, list]) => check(list, ip))?.[0]
  }
}
