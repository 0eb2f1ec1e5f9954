import { admits, envText, fromOutside, items, names, privateSubnets, type Definition, type IngressRule, type Problem, type Rule } from '../definition.ts'

// R2, R8, R9, R14: the internet reaches kennel only through the load balancer, only on the two
// TLS ports, with the TLS session passed through so the toy's client certificate reaches kennel.

const EDGE_PORTS = [8883, 8443]
const PLAINTEXT_MQTT = 1883

/** every ingress rule with its path and owning group */
function ingress(d: Definition): Array<{ group: string; rule: IngressRule; path: string }> {
  return items(d.securityGroups, 'securityGroups').flatMap(([sg, p]) =>
    items(sg.ingress, `securityGroups[${sg.id ?? p}].ingress`).map(([rule, path]) => ({ group: sg.id ?? p, rule, path })),
  )
}

const range = (r: IngressRule): string => `${r.protocol ?? '?'}/${r.fromPort ?? '*'}-${r.toPort ?? '*'}`

export const edgeTlsPassthrough: Rule = {
  id: 'edge-tls-passthrough',
  requirement: 'R2, R9, R14',
  prevents: 'unnecessary internet connectivity and no network separation',
  holds: 'only the internet-facing load balancer admits the internet, on 8883/8443, passing TLS through to kennel in private subnets and keeping the client address',
  check: (d) => {
    const problems: Problem[] = []
    const vpc = d.network?.vpc?.cidr
    const lbGroups = new Set(items(d.loadBalancers, 'loadBalancers').flatMap(([lb, p]) => (lb.scheme === 'internet-facing' ? names(lb.securityGroups, `${p}.securityGroups`) : [])))
    for (const { group, rule, path } of ingress(d)) {
      if (rule.cidr === undefined || !fromOutside(rule.cidr, vpc)) continue
      if (!lbGroups.has(group)) problems.push({ path, message: `${rule.cidr} reaches ${group} directly (${range(rule)}); the internet may reach only the load balancer` })
      else if (rule.protocol !== 'tcp' || rule.fromPort !== rule.toPort || !EDGE_PORTS.includes(rule.fromPort ?? -1)) problems.push({ path, message: `${rule.cidr} on ${range(rule)}; the load balancer admits only tcp/8883 and tcp/8443` })
    }
    for (const [lb, p] of items(d.loadBalancers, 'loadBalancers')) {
      if (lb.scheme !== 'internet-facing') continue
      for (const [l, lp] of items(lb.listeners, `${p}.listeners`)) {
        if (!EDGE_PORTS.includes(l.port ?? -1)) problems.push({ path: lp, message: `listener on ${l.port}; only 8883 (MQTT over TLS) and 8443 (HTTPS) face the internet` })
        // terminating TLS at the balancer would strip the toy's client certificate (R2)
        if (l.protocol !== 'TCP') problems.push({ path: `${lp}.protocol`, message: `${l.protocol ?? '(unset)'} terminates or drops TLS; use TCP (TLS passthrough)` })
        if (l.target?.port !== l.port) problems.push({ path: `${lp}.target`, message: `forwards ${l.port} to ${l.target?.port ?? '(nothing)'}; forward to the same TLS port` })
        // the denylist (R9) and per-IP limits (R6) need the real client address
        if (l.preserveClientIp !== true) problems.push({ path: `${lp}.preserveClientIp`, message: 'must be true: the denylist and per-IP limits need the client address' })
      }
    }
    for (const [s, p] of items(d.services, 'services')) {
      if (s.assignPublicIp !== false) problems.push({ path: `${p}.assignPublicIp`, message: 'must be false' })
      problems.push(...privateSubnets(d, s.subnets, `${p}.subnets`))
    }
    return problems
  },
}

export const noPlaintextMqtt: Rule = {
  id: 'no-plaintext-mqtt',
  requirement: 'R2, R8',
  prevents: 'toys talking without credentials or encryption',
  holds: `nothing opens ${PLAINTEXT_MQTT}: no security group, listener, container port or KENNEL_MQTT_PORT`,
  check: (d) => {
    const problems: Problem[] = ingress(d).filter(({ rule }) => admits(rule, PLAINTEXT_MQTT)).map(({ rule, path }) => ({ path, message: `admits ${range(rule)}, which includes plaintext MQTT ${PLAINTEXT_MQTT}` }))
    for (const [lb, p] of items(d.loadBalancers, 'loadBalancers')) {
      for (const [l, lp] of items(lb.listeners, `${p}.listeners`)) {
        if (l.port === PLAINTEXT_MQTT || l.target?.port === PLAINTEXT_MQTT) problems.push({ path: lp, message: `listener forwards plaintext MQTT ${PLAINTEXT_MQTT}` })
      }
    }
    for (const [s, p] of items(d.services, 'services')) {
      if ((s.containerPorts ?? []).includes(PLAINTEXT_MQTT)) problems.push({ path: `${p}.containerPorts`, message: `exposes ${PLAINTEXT_MQTT}` })
      if (envText(s.environment?.KENNEL_MQTT_PORT) === String(PLAINTEXT_MQTT)) problems.push({ path: `${p}.environment.KENNEL_MQTT_PORT`, message: `${PLAINTEXT_MQTT} is the plaintext MQTT port; kennel speaks MQTT only over TLS (8883)` })
    }
    return problems
  },
}

export const metricsNotPublic: Rule = {
  id: 'metrics-not-public',
  requirement: 'R11, R14',
  prevents: 'operational interfaces left open on the internet',
  holds: 'the metrics port is reached by no outside address, no listener and no container port (a sidecar scrapes it over loopback)',
  check: (d) => {
    const problems: Problem[] = []
    const vpc = d.network?.vpc?.cidr
    const ports = new Set(items(d.services, 'services').map(([s]) => Number(envText(s.environment?.KENNEL_METRICS_PORT) ?? 9464)))
    for (const port of ports) {
      for (const { rule, path } of ingress(d)) {
        if (rule.cidr !== undefined && fromOutside(rule.cidr, vpc) && admits(rule, port)) problems.push({ path, message: `${rule.cidr} reaches the metrics port ${port} (${range(rule)})` })
      }
      for (const [lb, p] of items(d.loadBalancers, 'loadBalancers')) {
        for (const [l, lp] of items(lb.listeners, `${p}.listeners`)) {
          if (l.port === port || l.target?.port === port) problems.push({ path: lp, message: `listener forwards the metrics port ${port}` })
        }
      }
      for (const [s, p] of items(d.services, 'services')) {
        if ((s.containerPorts ?? []).includes(port)) problems.push({ path: `${p}.containerPorts`, message: `exposes the metrics port ${port}; kennel binds it to 127.0.0.1` })
      }
    }
    return problems
  },
}
