import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import type { Documents } from '../projections/projection.ts'
import type { CaIssuer, DeviceCa } from './ca.ts'
import { revokedCertificates } from './registry.ts'

// CRL export (R3): one CRL per CA whose key kennel holds, listing the revoked certificates it
// issued. OpenSSL 3 refuses @peculiar/x509's `BEGIN CRL` label, so the DER is written as
// `X509 CRL`. An expired CRL makes OpenSSL reject every client: export again
// before nextUpdate.

export async function buildCrl(ca: DeviceCa, docs: Documents, now: Date, validDays = 7): Promise<string> {
  const revoked = [...revokedCertificates(docs)]
  const pems: string[] = []
  for (const issuer of [ca.issuer, ...ca.previousIssuers]) {
    pems.push(
      await crlFor(
        issuer,
        revoked.filter((c) => c.caId === issuer.info.caId),
        now,
        validDays,
      ),
    )
  }
  return pems.join('')
}

async function crlFor(
  issuer: CaIssuer,
  revoked: { serial: string; revokedAt: string }[],
  now: Date,
  validDays: number,
): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.certificate.subjectName,
    thisUpdate: now,
    nextUpdate: new Date(now.getTime() + validDays * 86_400_000),
    signingKey: issuer.signingKey,
    signingAlgorithm: issuer.signingAlgorithm,
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate)],
    entries: revoked.map((c) => ({
      serialNumber: c.serial.length % 2 === 0 ? c.serial : `0${c.serial}`,
      revocationDate: new Date(c.revokedAt),
    })),
  })
  return `${x509.PemConverter.encode(crl.rawData, 'X509 CRL')}\n`
}
