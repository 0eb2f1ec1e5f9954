import 'reflect-metadata'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as x509 from '@peculiar/x509'
import { type BrokerUnderTest, freePort, OutputTail, stopChild, waitListening } from './subject.ts'
import type { PreparedData } from './toys.ts'

// Mosquitto 2 (the Debian package) as a child, configured as the equivalent of kennel's broker:
// kennel's device CA as `cafile`, kennel's server certificate and key, a client certificate
// required and its CN used as the username, each toy confined to `toys/<CN>/#` by an ACL
// pattern, a CRL of revoked toys, no persistence. Mosquitto checks the CRL only during the TLS
// handshake, and re-reads it on SIGHUP; it has no way to close a session whose certificate was
// revoked after it connected short of a restart, which closes every session.

export const MOSQUITTO = '/usr/sbin/mosquitto'
export const MOSQUITTO_INSTALL = 'apt-get install mosquitto'

export function mosquittoVersion(): string | undefined {
  if (!fs.existsSync(MOSQUITTO)) return undefined
  try {
    execFileSync(MOSQUITTO, ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    // `mosquitto -h` prints its version and exits non-zero
    const out = String((err as { stdout?: string }).stdout ?? '')
    return /mosquitto version (\S+)/.exec(out)?.[1]
  }
  return undefined
}

export class MosquittoUnderTest implements BrokerUnderTest {
  readonly name = 'mosquitto'
  port = 0
  private child: ChildProcess | undefined
  private readonly dir: string
  private readonly tail = new OutputTail()
  private revoked: string[] = []

  constructor(
    private readonly data: PreparedData,
    runDir: string,
  ) {
    this.dir = path.join(runDir, 'mosquitto')
  }

  get pid(): number {
    return this.child?.pid ?? 0
  }

  private file(name: string): string {
    return path.join(this.dir, name)
  }

  async start(): Promise<void> {
    fs.rmSync(this.dir, { recursive: true, force: true })
    fs.mkdirSync(this.dir, { mode: 0o700 })
    this.port = await freePort()
    this.revoked = []
    fs.writeFileSync(this.file('ca.pem'), this.data.ca.trustedPem)
    fs.writeFileSync(this.file('server.crt'), this.data.serverTls.cert)
    fs.writeFileSync(this.file('server.key'), this.data.serverTls.key, { mode: 0o600 })
    fs.writeFileSync(this.file('acl'), 'pattern readwrite toys/%u/#\n')
    await this.writeCrl()
    const conf = [
      // run as the bench's user: as root Mosquitto would switch to `mosquitto`, which cannot read the files above
      `user ${os.userInfo().username}`,
      'persistence false',
      'allow_anonymous false',
      `acl_file ${this.file('acl')}`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'connection_messages false',
      `listener ${this.port} 127.0.0.1`,
      `cafile ${this.file('ca.pem')}`,
      `certfile ${this.file('server.crt')}`,
      `keyfile ${this.file('server.key')}`,
      `crlfile ${this.file('crl.pem')}`,
      'require_certificate true',
      'use_identity_as_username true',
    ]
    fs.writeFileSync(this.file('mosquitto.conf'), `${conf.join('\n')}\n`)
    await this.spawn()
  }

  private async spawn(): Promise<void> {
    const child = spawn(MOSQUITTO, ['-c', this.file('mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] })
    this.child = child
    child.stderr!.on('data', (b: Buffer) => this.tail.push(b))
    await waitListening(this.port, 30_000, () =>
      child.exitCode !== null || child.signalCode !== null
        ? `mosquitto exited (${child.exitCode ?? child.signalCode}):\n${this.tail}`
        : undefined,
    )
  }

  /** add the toy's certificate to the CRL file (read at start and on SIGHUP) */
  async revokeInCrl(serial: string): Promise<void> {
    this.revoked.push(serial)
    await this.writeCrl()
  }

  /** SIGHUP: Mosquitto re-reads its configuration and the CRL; sessions stay as they are */
  reload(): void {
    this.child?.kill('SIGHUP')
  }

  /** stop and start again with the current files; resolves when it listens again */
  async restart(): Promise<void> {
    if (this.child) await stopChild(this.child, 10_000)
    await this.spawn()
  }

  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child, 10_000)
    this.child = undefined
    fs.rmSync(this.dir, { recursive: true, force: true })
  }

  // a CRL signed by the device CA, as `kennel ca crl` writes it (DER under the `X509 CRL` label,
  // which OpenSSL 3 reads)
  private async writeCrl(): Promise<void> {
    const issuer = this.data.ca.issuer
    const now = new Date()
    const crl = await x509.X509CrlGenerator.create({
      issuer: issuer.certificate.subjectName,
      thisUpdate: new Date(now.getTime() - 60_000),
      nextUpdate: new Date(now.getTime() + 86_400_000),
      signingKey: issuer.signingKey,
      signingAlgorithm: issuer.signingAlgorithm,
      extensions: [await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate)],
      entries: this.revoked.map((serial) => ({
        serialNumber: serial.length % 2 === 0 ? serial : `0${serial}`,
        revocationDate: now,
      })),
    })
    const tmp = this.file('crl.pem.tmp')
    fs.writeFileSync(tmp, `${x509.PemConverter.encode(crl.rawData, 'X509 CRL')}\n`)
    fs.renameSync(tmp, this.file('crl.pem'))
  }
}
