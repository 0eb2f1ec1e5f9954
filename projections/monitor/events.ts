// Events of the security monitor (R11), appended by projections/ to `alerts`.

export const ALERTS_STREAM = 'alerts'

export interface SecurityAlertRaised {
  type: 'SecurityAlertRaised'
  data: {
    rule: string
    /** what the rule counted by: an IP, a certificate, a device, an account, or `all` */
    key: string
    severity: 'warning' | 'critical'
    /** the measure that reached the threshold within the window */
    count: number
    threshold: number
    windowSeconds: number
    /** event times of the first and last counted event */
    firstAt: string
    lastAt: string
    triggeringEventId: string
    triggeringPosition: number
    summary: string
  }
}

export interface AlertDeliveryFailed {
  type: 'AlertDeliveryFailed'
  data: { alertId: string; rule: string; attempts: number; error: string }
}

export type MonitorEvent = SecurityAlertRaised | AlertDeliveryFailed
