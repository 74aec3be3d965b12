// A NoCloud seed on disk: an ISO 9660 volume labelled `cidata`, attached as a read-only CD-ROM.
// Built in memory (iso9660.ts: the layout genisoimage's `-joliet -rational-rock` gives), with
// every date fixed, so the same files give the same bytes.
import { VmletError } from '../errors.js';
import { atomicWrite } from '../util/atomic-write.js';
import { buildIso9660 } from './iso9660.js';

export const SEED_VOLUME_ID = 'cidata';
/** Every timestamp in the image: file, directory and volume dates (1970-01-01T00:00:00Z). */
export const SEED_EPOCH = 0;

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Writes `files` (name → content) as a cidata ISO at `path`, atomically: readers see the old
 * image or the new one. The file is 0600: user-data may carry the container's env (Secrets).
 */
export async function writeSeedIso(path: string, files: Readonly<Record<string, string>>): Promise<void> {
  for (const name of Object.keys(files)) {
    if (!FILE_NAME.test(name)) throw new VmletError('internal', `seed file name ${JSON.stringify(name)} is not a plain file name`);
  }
  const iso = buildIso9660(SEED_VOLUME_ID, Object.entries(files).map(([name, content]) => ({ name, data: Buffer.from(content, 'utf8') })), SEED_EPOCH);
  try {
    await atomicWrite(path, iso, 0o600);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const kind = e.code === 'ENOSPC' || e.code === 'EDQUOT' ? 'resource-exhausted' : 'internal';
    throw new VmletError(kind, `cannot write the cloud-init seed ${path}: ${e.message}`, { cause: err });
  }
}
