import {
  admits,
  ingressRules,
  list,
  obj,
  ofType,
  render,
  settingOf,
  subnetExit,
  target,
  type IngressRule,
  type JsonObject,
} from '../template.ts'
import type { Control, Facts, Problem } from './facts.ts'

// R2, R6, R8, R9, R11, R14: the internet reaches kennel only through the network load
// balancer, only on the two TLS ports, with the TLS session passed through (mutual TLS ends at
// kennel, so the toy's certificate reaches it) and the client address kept (denylist, per-IP
// limits). Nothing opens plaintext MQTT or the metrics port.

const EDGE_PORTS = [8883, 8443]
const PLAINTEXT_MQTT = 1883
const DEFAULT_METRICS_PORT = 9464

const range = (r: IngressRule): string => `${r.protocol}/${r.from}-${r.to}`
const insideVpc = (cidr: string): boolean => /^<[^>]+\.CidrBlock>$/.test(cidr)

const internetFacing = (p: JsonObject): boolean => p.Scheme !== 'internal'

function listenersOf(f: Facts, lb: string): Array<[string, JsonObject]> {
  return ofType(f.template, 'AWS::ElasticLoadBalancingV2::Listener').filter(([, p]) => target(p.LoadBalancerArn) === lb)
}

function targetGroupsOf(f: Facts, listener: JsonObject): Array<[string, JsonObject]> {
  const ids = list(listener.DefaultActions)
    .flatMap((a) => [
      obj(a).TargetGroupArn,
      ...list(obj(obj(a).ForwardConfig).TargetGroups).map((g) => obj(g).TargetGroupArn),
    ])
    .map((v) => target(v ?? undefined))
  return ofType(f.template, 'AWS::ElasticLoadBalancingV2::TargetGroup').filter(([id]) => ids.includes(id))
}

const attribute = (p: JsonObject, key: string): string | undefined => {
  const found = list(p.TargetGroupAttributes)
    .map(obj)
    .find((a) => a.Key === key)
  return found === undefined ? undefined : render(found.Value)
}

export const edgeTlsPassthrough: Control = {
  id: 'edge-tls-passthrough',
  requirement: 'R2, R6, R9, R14',
  holds:
    'only the internet-facing NLB admits the internet, on tcp/8883 and tcp/8443, passing TLS through to kennel (TCP listeners, client address preserved); kennel tasks have no public address',
  check: (f) => {
    const problems: Problem[] = []
    const edgeGroups = new Set<string>()
    const balancers = ofType(f.template, 'AWS::ElasticLoadBalancingV2::LoadBalancer').filter(([, p]) =>
      internetFacing(p),
    )
    if (balancers.length === 0)
      problems.push({ path: 'Resources', message: 'no internet-facing load balancer: toys cannot reach kennel' })
    for (const [lb, p] of balancers) {
      // an application load balancer terminates TLS: the client certificate would stop there (R2)
      if (p.Type !== 'network')
        problems.push({
          path: `${lb}.Type`,
          message: `${render(p.Type ?? 'application')} terminates TLS; use a network load balancer`,
        })
      const groups = list(p.SecurityGroups).map((g) => target(g) ?? render(g))
      if (groups.length === 0)
        problems.push({
          path: `${lb}.SecurityGroups`,
          message: 'without a security group the targets themselves must admit the internet',
        })
      for (const g of groups) edgeGroups.add(g)
      for (const [id, l] of listenersOf(f, lb)) {
        const port = Number(render(l.Port))
        if (!EDGE_PORTS.includes(port))
          problems.push({
            path: `${id}.Port`,
            message: `listener on ${port}; only 8883 (MQTT over TLS) and 8443 (HTTPS) face the internet`,
          })
        if (l.Protocol !== 'TCP')
          problems.push({
            path: `${id}.Protocol`,
            message: `${render(l.Protocol ?? '(unset)')} terminates or drops TLS at the balancer; use TCP so mutual TLS ends at kennel`,
          })
        const groupsOfListener = targetGroupsOf(f, l)
        if (groupsOfListener.length === 0)
          problems.push({ path: `${id}.DefaultActions`, message: 'forwards to no target group of this template' })
        for (const [tg, t] of groupsOfListener) {
          if (t.Protocol !== 'TCP')
            problems.push({
              path: `${tg}.Protocol`,
              message: `${render(t.Protocol ?? '(unset)')}; the target group must be TCP (TLS passthrough)`,
            })
          if (Number(render(t.Port)) !== port)
            problems.push({
              path: `${tg}.Port`,
              message: `forwards ${port} to ${render(t.Port)}; forward to the same TLS port`,
            })
          // the denylist (R9) and per-IP limits (R6) need the real client address
          if (attribute(t, 'preserve_client_ip.enabled') !== 'true')
            problems.push({
              path: `${tg}.TargetGroupAttributes`,
              message:
                'preserve_client_ip.enabled must be true: the denylist and per-IP limits need the client address',
            })
        }
      }
    }
    for (const r of ingressRules(f.template)) {
      if (r.cidr === undefined || insideVpc(r.cidr)) continue
      if (!edgeGroups.has(r.group))
        problems.push({
          path: r.path,
          message: `${r.cidr} reaches ${r.group} directly (${range(r)}); the internet may reach only the load balancer`,
        })
      else if (r.protocol !== 'tcp' || r.from !== r.to || !EDGE_PORTS.includes(r.from))
        problems.push({
          path: r.path,
          message: `${r.cidr} on ${range(r)}; the load balancer admits only tcp/8883 and tcp/8443`,
        })
    }
    for (const s of f.services) {
      if (s.publicIp)
        problems.push({
          path: `${s.id}.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp`,
          message: 'must be DISABLED',
        })
      for (const subnet of s.subnets) {
        if (subnetExit(f.template, subnet) === 'internet')
          problems.push({
            path: `${s.id}.NetworkConfiguration.AwsvpcConfiguration.Subnets`,
            message: `subnet ${subnet} is public; kennel tasks belong in private subnets`,
          })
      }
    }
    return problems
  },
}

/** every way a port can be reached: ingress rules, listeners, target groups and health checks, container ports */
function exposures(f: Facts, port: number): Problem[] {
  const problems: Problem[] = ingressRules(f.template)
    .filter((r) => admits(r, port))
    .map((r) => ({
      path: r.path,
      message: `admits ${range(r)} from ${r.cidr ?? r.sourceGroup ?? '?'}, which includes port ${port}`,
    }))
  for (const [id, l] of ofType(f.template, 'AWS::ElasticLoadBalancingV2::Listener')) {
    if (Number(render(l.Port)) === port) problems.push({ path: `${id}.Port`, message: `a listener on port ${port}` })
  }
  for (const [id, t] of ofType(f.template, 'AWS::ElasticLoadBalancingV2::TargetGroup')) {
    if (Number(render(t.Port)) === port)
      problems.push({ path: `${id}.Port`, message: `a target group forwarding to port ${port}` })
    if (t.HealthCheckPort !== undefined && Number(render(t.HealthCheckPort)) === port)
      problems.push({ path: `${id}.HealthCheckPort`, message: `health checks reach port ${port}` })
  }
  for (const c of f.kennel) {
    if (c.ports.includes(port)) problems.push({ path: `${c.path}.PortMappings`, message: `maps port ${port}` })
  }
  return problems
}

export const noPlaintextMqtt: Control = {
  id: 'no-plaintext-mqtt',
  requirement: 'R2, R8',
  holds: `nothing opens ${PLAINTEXT_MQTT}: no security group rule, listener, target group, port mapping or KENNEL_MQTT_PORT`,
  check: (f) => [
    ...exposures(f, PLAINTEXT_MQTT),
    ...f.kennel
      .filter((c) => settingOf(c, 'KENNEL_MQTT_PORT') === String(PLAINTEXT_MQTT))
      .map((c) => ({
        path: `${c.path}.KENNEL_MQTT_PORT`,
        message: `${PLAINTEXT_MQTT} is the plaintext MQTT port; kennel speaks MQTT only over TLS (8883)`,
      })),
  ],
}

export const metricsNotPublic: Control = {
  id: 'metrics-not-public',
  requirement: 'R11, R14',
  holds:
    'the metrics port is opened by no security group rule, listener, target group, health check or port mapping (kennel binds it to 127.0.0.1)',
  check: (f) => {
    const ports = new Set(f.kennel.map((c) => Number(settingOf(c, 'KENNEL_METRICS_PORT') ?? DEFAULT_METRICS_PORT)))
    return [...ports].flatMap((port) => exposures(f, port))
  },
}
