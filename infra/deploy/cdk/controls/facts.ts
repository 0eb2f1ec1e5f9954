import {
  containers,
  list,
  obj,
  ofType,
  props,
  target,
  type CfnTemplate,
  type Container,
  type Json,
} from '../template.ts'

// What the controls need to know about a template before they judge it: which containers run
// kennel, which groups and roles are kennel's, which bucket holds the recordings. Each is found
// from the template's own references (KENNEL_S3_BUCKET → the bucket, TaskRoleArn → the role),
// so a renamed construct cannot slip past a control.

export interface Problem {
  path: string
  message: string
}

/** one control of R14: `check` lists what breaks it; no problems = the control holds */
export interface Control {
  id: string
  /** the requirement ids it enforces */
  requirement: string
  /** what holds when the control passes */
  holds: string
  check: (f: Facts) => Problem[]
}

export interface KennelService {
  id: string
  taskDefinition: string | undefined
  groups: string[]
  subnets: string[]
  publicIp: boolean
}

export interface Facts {
  template: CfnTemplate
  /** containers that run kennel */
  kennel: Container[]
  services: KennelService[]
  /** security groups of the kennel services: the only legitimate clients of the data stores */
  kennelGroups: Set<string>
  /** task roles of the kennel task definitions */
  taskRoles: Set<string>
  /** the bucket KENNEL_S3_BUCKET names; undefined unless every kennel container names the same bucket of this template */
  recordings: string | undefined
}

const runsKennel = (c: Container): boolean =>
  Object.keys(c.environment).some((k) => k.startsWith('KENNEL_')) || c.command.some((s) => s.includes('kennel.js'))

export function factsOf(template: CfnTemplate): Facts {
  const kennel = containers(template).filter(runsKennel)
  const kennelTasks = new Set(kennel.map((c) => c.taskDefinition))
  const services = ofType(template, 'AWS::ECS::Service')
    .map(([id, p]): KennelService => {
      const net = obj(obj(p.NetworkConfiguration).AwsvpcConfiguration)
      return {
        id,
        taskDefinition: target(p.TaskDefinition),
        groups: list(net.SecurityGroups).map((g) => target(g) ?? String(g)),
        subnets: list(net.Subnets).map((s) => target(s) ?? String(s)),
        publicIp: net.AssignPublicIp !== 'DISABLED',
      }
    })
    .filter((s) => s.taskDefinition !== undefined && kennelTasks.has(s.taskDefinition))
  const taskRoles = new Set(
    [...kennelTasks]
      .map((id) => target(props(template.Resources?.[id]).TaskRoleArn))
      .filter((r): r is string => r !== undefined),
  )
  const buckets = new Set(
    kennel.map((c) => target(c.environment.KENNEL_S3_BUCKET as Json | undefined) ?? '(not a bucket of this template)'),
  )
  const recordings = buckets.size === 1 ? [...buckets][0] : undefined
  return {
    template,
    kennel,
    services,
    kennelGroups: new Set(services.flatMap((s) => s.groups)),
    taskRoles,
    recordings:
      recordings !== undefined && template.Resources?.[recordings]?.Type === 'AWS::S3::Bucket' ? recordings : undefined,
  }
}
