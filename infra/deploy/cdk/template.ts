// Reading a synthesized CloudFormation template for the controls: resources by type, references
// between them, security-group rules, subnet routes and kennel's containers. Everything is
// read from the template itself, not from the CDK objects, so the controls judge exactly what
// CloudFormation would create (and a template edited by hand or by a later construct too).

export type Json = string | number | boolean | null | Json[] | { [key: string]: Json }
export type JsonObject = { [key: string]: Json }
export interface Resource {
  Type: string
  Properties?: JsonObject
}
export interface CfnTemplate {
  Resources?: Record<string, Resource>
}

export const obj = (v: Json | undefined): JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? v : {}
export const list = (v: Json | undefined): Json[] => (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v])
export const props = (r: Resource | undefined): JsonObject => obj(r?.Properties)

/** every resource of a type, with its logical id */
export function ofType(t: CfnTemplate, type: string): Array<[string, JsonObject]> {
  return Object.entries(t.Resources ?? {})
    .filter(([, r]) => r.Type === type)
    .map(([id, r]) => [id, props(r)])
}

/** the logical id a `Ref` or `Fn::GetAtt` points at */
export function target(v: Json | undefined): string | undefined {
  const o = obj(v)
  if (typeof o.Ref === 'string') return o.Ref
  const att = o['Fn::GetAtt']
  if (Array.isArray(att) && typeof att[0] === 'string') return att[0]
  if (typeof att === 'string') return att.split('.')[0]
  return undefined
}

/** a value as text, references as `<Id>` / `<Id.Attr>` (cdk-nag's notation), joins joined */
export function render(v: Json | undefined): string {
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  const o = obj(v)
  if (typeof o.Ref === 'string') return `<${o.Ref}>`
  const att = o['Fn::GetAtt']
  if (Array.isArray(att)) return `<${att.map(render).join('.')}>`
  if (typeof att === 'string') return `<${att}>`
  const join = o['Fn::Join']
  if (Array.isArray(join) && typeof join[0] === 'string') return list(join[1]).map(render).join(join[0])
  return JSON.stringify(v ?? null)
}

/** CloudFormation resolves `{{resolve:secretsmanager:…}}` at deploy time: the template holds no value */
export const secretReference = (v: Json | undefined): boolean => /^\{\{resolve:secretsmanager:.+\}\}$/.test(render(v))

export interface IngressRule {
  /** logical id of the group the rule belongs to */
  group: string
  protocol: string
  from: number
  to: number
  /** an address range (any outside source), or the logical id of a source group */
  cidr: string | undefined
  sourceGroup: string | undefined
  path: string
}

const port = (v: Json | undefined, dflt: number): number =>
  typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : dflt

function ingressRule(group: string, r: JsonObject, path: string): IngressRule {
  const protocol = String(r.IpProtocol ?? '-1')
  const all = protocol === '-1' || protocol === 'all'
  const cidr = r.CidrIp ?? r.CidrIpv6 ?? r.SourcePrefixListId
  return {
    group,
    protocol: all ? '-1' : protocol,
    from: all ? 0 : port(r.FromPort, 0),
    to: all ? 65535 : port(r.ToPort, 65535),
    cidr: cidr === undefined ? undefined : render(cidr),
    sourceGroup: target(r.SourceSecurityGroupId),
    path,
  }
}

/** every ingress rule, inline in a group or a resource of its own */
export function ingressRules(t: CfnTemplate): IngressRule[] {
  const inline = ofType(t, 'AWS::EC2::SecurityGroup').flatMap(([id, p]) =>
    list(p.SecurityGroupIngress).map((r, i) => ingressRule(id, obj(r), `${id}.SecurityGroupIngress[${i}]`)),
  )
  const separate = ofType(t, 'AWS::EC2::SecurityGroupIngress').map(([id, p]) =>
    ingressRule(target(p.GroupId) ?? render(p.GroupId), p, id),
  )
  return [...inline, ...separate]
}

/** does the rule admit TCP traffic to `p`? */
export const admits = (r: IngressRule, p: number): boolean =>
  (r.protocol === '-1' || r.protocol === 'tcp' || r.protocol === '6') && r.from <= p && p <= r.to

/** what a subnet's route table sends outside the VPC: `internet` (an internet gateway), `nat`, or nothing */
export function subnetExit(t: CfnTemplate, subnet: string): 'internet' | 'nat' | 'none' {
  const tables = ofType(t, 'AWS::EC2::SubnetRouteTableAssociation')
    .filter(([, p]) => target(p.SubnetId) === subnet)
    .map(([, p]) => target(p.RouteTableId))
  const routes = ofType(t, 'AWS::EC2::Route').filter(([, p]) => tables.includes(target(p.RouteTableId)))
  if (routes.some(([, p]) => p.GatewayId !== undefined || p.EgressOnlyInternetGatewayId !== undefined))
    return 'internet'
  if (
    routes.some(
      ([, p]) => p.NatGatewayId !== undefined || p.TransitGatewayId !== undefined || p.InstanceId !== undefined,
    )
  )
    return 'nat'
  const subnetProps = props(t.Resources?.[subnet])
  return subnetProps.MapPublicIpOnLaunch === true ? 'internet' : 'none'
}

export interface Container {
  /** `<TaskDefinition>.ContainerDefinitions[i]` */
  path: string
  taskDefinition: string
  environment: Record<string, Json>
  /** container secrets: variable name → the secret it is read from */
  secrets: Record<string, Json>
  command: string[]
  ports: number[]
}

export function containers(t: CfnTemplate): Container[] {
  return ofType(t, 'AWS::ECS::TaskDefinition').flatMap(([id, p]) =>
    list(p.ContainerDefinitions).map((c, i) => {
      const def = obj(c)
      return {
        path: `${id}.ContainerDefinitions[${i}]`,
        taskDefinition: id,
        environment: Object.fromEntries(list(def.Environment).map((e) => [String(obj(e).Name), obj(e).Value ?? null])),
        secrets: Object.fromEntries(list(def.Secrets).map((s) => [String(obj(s).Name), obj(s).ValueFrom ?? null])),
        command: [...list(def.EntryPoint), ...list(def.Command)].map(render),
        ports: list(def.PortMappings)
          .flatMap((m) => [port(obj(m).ContainerPort, -1), port(obj(m).HostPort, -1)])
          .filter((n) => n >= 0),
      }
    }),
  )
}

/** the `export NAME="value"` lines of a container's shell entrypoint */
export function exportsOf(c: Container): Record<string, string> {
  const script = c.command.join('\n')
  return Object.fromEntries([...script.matchAll(/^export (\w+)="([^"]*)"$/gm)].map((m) => [m[1]!, m[2]!]))
}

/** a container's settings as the kennel process sees them: environment, then the entrypoint's exports */
export function settingOf(c: Container, name: string): string | undefined {
  const exported = exportsOf(c)[name]
  if (exported !== undefined) return exported
  const v = c.environment[name]
  return v === undefined ? undefined : render(v)
}
