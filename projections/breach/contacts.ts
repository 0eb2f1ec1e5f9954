// Whom to write to (R16, R12). Contact addresses are personal data kept sealed with each
// person's own key; the projections context cannot open them and does not need to know how. The
// composition root injects a resolver, and the report asks it once per report: the addresses are
// unsealed for that report only and never written to an event.

/** what a resolver answers for an account whose key was shredded (erasure, R12) */
export const ERASED = '[erased]'

/** accountId → its contact address, or ERASED; an account with no address on record is absent */
export type ContactResolver = (accountIds: readonly string[]) => Promise<ReadonlyMap<string, string>>

/** how a notification's contact stood when the report was made, as recorded in its event */
export type ContactStatus = 'resolved' | 'erased' | 'unknown'

export const contactStatus = (contact: string | undefined): ContactStatus =>
  contact === undefined ? 'unknown' : contact === ERASED ? 'erased' : 'resolved'
