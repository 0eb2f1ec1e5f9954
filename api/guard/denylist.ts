import { BlockList, isIPv4 } from 'node:net'

// R9: a CIDR denylist checked on TCP accept, before TLS.
export class Denylist {
  private readonly list = new BlockList()
  private readonly cidrs: string[]

  constructor(cidrs: readonly string[]) {
    this.cidrs = [...cidrs]
    for (const c of cidrs) {
      const [addr = '', bits] = c.split('/')
      const type = isIPv4(addr) ? 'ipv4' : 'ipv6'
      if (bits === undefined) this.list.addAddress(addr, type)
      else this.list.addSubnet(addr, Number(bits), type)
    }
  }

  get size(): number {
    return this.cidrs.length
  }

  /** the matching rule, or undefined; IPv4-mapped IPv6 addresses are checked as IPv4 */
  match(address: string | undefined): string | undefined {
    if (!address || this.cidrs.length === 0) return undefined
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1]
    const ip = mapped ?? address
    if (!this.list.check(ip, isIPv4(ip) ? 'ipv4' : 'ipv6')) return undefined
    return this.cidrs.find((c) => {
      const one = new Denylist([c])
      return one.list.check(ip, isIPv4(ip) ? 'ipv4' : 'ipv6')
    })
  }
}
