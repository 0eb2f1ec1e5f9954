import path from 'node:path'
import type { Config } from '../config.ts'
import type { KeyStore } from '../keystore/port.ts'
import { KeyRing } from './keys.ts'
import { LocalBlobStore } from './local.ts'
import type { BlobStore } from './port.ts'
import { S3BlobStore } from './s3.ts'

/** The recordings store the configuration names: S3 with KENNEL_S3_BUCKET, else the embedded
 * encrypted store in <data dir>/blobs (what the CLI's erasure, export and retention work on), its
 * household keys in `keys` (infra/keystore/open.ts; default files in <data dir>/blobs/keys). */
export function openBlobStore(
  config: Pick<Config, 's3Bucket' | 's3Region' | 's3Endpoint' | 's3KmsKeyId' | 'dataDir'>,
  masterKey: Buffer,
  keys?: KeyStore,
): BlobStore {
  if (config.s3Bucket !== undefined)
    return new S3BlobStore({
      bucket: config.s3Bucket,
      region: config.s3Region,
      endpoint: config.s3Endpoint,
      kmsKeyId: config.s3KmsKeyId,
    })
  return new LocalBlobStore({
    dir: path.join(config.dataDir, 'blobs'),
    masterKey,
    ...(keys ? { keys: new KeyRing(keys, masterKey, 'household-data') } : {}),
  })
}
