// A NoCloud seed on disk: an ISO 9660 volume labelled `cidata`, attached as a read-only CD-ROM.
// Made with Debian's genisoimage (the tool cloud-utils' cloud-localds uses, same flags but
// rationalized Rock Ridge), then its timestamps are fixed so the same files give the same bytes.
import { mkdir, mkdtemp, open, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { execa, type ExecaError } from 'execa';
import { VmletError } from '../errors.js';
import { which } from '../util/binaries.js';

export const SEED_ISO_TOOL = 'genisoimage';
export const SEED_VOLUME_ID = 'cidata';
/** Every timestamp in the image: file, directory and volume dates (1970-01-01T00:00:00Z). */
export const SEED_EPOCH = 0;

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SECTOR = 2048;

/** Path of genisoimage, or undefined when it is not installed (for `vmlet doctor`). */
export function seedIsoTool(): string | undefined {
  return which(SEED_ISO_TOOL);
}

/**
 * Writes `files` (name → content) as a cidata ISO at `path`, atomically: readers see the old
 * image or the new one. The file is 0600: user-data may carry the container's env (Secrets).
 */
export async function writeSeedIso(path: string, files: Readonly<Record<string, string>>): Promise<void> {
  for (const name of Object.keys(files)) {
    if (!FILE_NAME.test(name)) throw new VmletError('internal', `seed file name ${JSON.stringify(name)} is not a plain file name`);
  }
  const tool = seedIsoTool();
  if (!tool) {
    throw new VmletError('failed-precondition', `${SEED_ISO_TOOL} not found on PATH: install Debian's genisoimage package (node-install/install.sh does) to build cloud-init seeds`);
  }
  // Next to `path`, so the final rename stays on one filesystem.
  const tmp = await mkdtemp(join(dirname(path), `.${basename(path)}.`));
  try {
    const root = join(tmp, 'root');
    await mkdir(root, { mode: 0o700 });
    for (const [name, content] of Object.entries(files)) {
      const p = join(root, name);
      await writeFile(p, content, { mode: 0o600 });
      await utimes(p, SEED_EPOCH, SEED_EPOCH);
    }
    await utimes(root, SEED_EPOCH, SEED_EPOCH); // the root directory's own date
    const iso = join(tmp, 'seed.iso');
    // -rational-rock (not -rock): owner root, modes r--r--r--, whoever runs vmlet with any umask.
    // Passing the directory (not the files) gives the root directory the fixed date too.
    const args = ['-quiet', '-output', iso, '-volid', SEED_VOLUME_ID, '-joliet', '-rational-rock', '-input-charset', 'utf-8', root];
    try {
      await execa(tool, args, { timeout: 30_000, stdin: 'ignore', env: { LC_ALL: 'C' } });
    } catch (err) {
      const e = err as ExecaError;
      const detail = String(e.stderr ?? '').trim() || e.shortMessage || String(err);
      const kind = /No space left on device|Disk quota exceeded/.test(detail) ? 'resource-exhausted' : 'internal';
      throw new VmletError(kind, `${SEED_ISO_TOOL} failed to write the cloud-init seed ${path}: ${detail}`, { cause: err });
    }
    const fh = await open(iso, 'r+');
    try {
      const { size } = await fh.stat();
      const buf = Buffer.alloc(size);
      await fh.read(buf, 0, size, 0);
      normalizeIsoTimestamps(buf, SEED_EPOCH);
      await fh.write(buf, 0, size, 0);
      await fh.chmod(0o600);
      await fh.sync(); // the rename must not become visible before the data is on disk
    } finally {
      await fh.close();
    }
    await rename(iso, path);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Sets every date genisoimage writes to `epochSeconds`: the volume descriptors' creation,
 * modification and effective dates, each directory record's date, and the Rock Ridge TF
 * entries (whose access and attribute-change times come from the files' inodes and cannot be
 * set beforehand). genisoimage 1.1.11 has no option for these and ignores SOURCE_DATE_EPOCH.
 * Walks the primary (Rock Ridge) and Joliet trees; anything malformed is left alone.
 */
export function normalizeIsoTimestamps(iso: Buffer, epochSeconds: number): void {
  const d = new Date(epochSeconds * 1000);
  const p2 = (n: number) => String(n).padStart(2, '0');
  const long = Buffer.from(`${String(d.getUTCFullYear()).padStart(4, '0')}${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}00\0`, 'latin1');
  const short = Buffer.from([d.getUTCFullYear() - 1900, d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), 0]);
  const unsetLong = Buffer.from('0000000000000000\0', 'latin1');
  const put = (src: Buffer, at: number) => {
    if (at >= 0 && at + src.length <= iso.length) src.copy(iso, at);
  };

  const seen = new Set<number>();
  const susp = (start: number, end: number, depth: number): void => {
    let p = start;
    while (p + 4 <= end) {
      const sig = iso.toString('latin1', p, p + 2);
      const len = iso[p + 2]!;
      if (len < 4 || p + len > end) return;
      if (sig === 'TF' && len >= 5) {
        const flags = iso[p + 4]!;
        const size = flags & 0x80 ? 17 : 7;
        let q = p + 5;
        for (let bit = 0; bit < 7; bit++) {
          if (!(flags & (1 << bit))) continue;
          if (q + size > p + len) break;
          put(size === 17 ? long : short, q);
          q += size;
        }
      } else if (sig === 'CE' && len >= 28 && depth < 8) {
        const at = iso.readUInt32LE(p + 4) * SECTOR + iso.readUInt32LE(p + 12);
        const ceLen = iso.readUInt32LE(p + 20);
        if (at + ceLen <= iso.length) susp(at, at + ceLen, depth + 1);
      } else if (sig === 'ST') {
        return;
      }
      p += len;
    }
  };
  const walkDir = (lba: number, size: number): void => {
    if (seen.has(lba)) return;
    seen.add(lba);
    const start = lba * SECTOR;
    const end = Math.min(start + size, iso.length);
    let p = start;
    while (p < end) {
      const len = iso[p]!;
      if (len === 0) {
        p = (Math.floor((p - start) / SECTOR) + 1) * SECTOR + start; // records never cross sectors
        continue;
      }
      if (len < 34 || p + len > end) return;
      put(short, p + 18);
      const nameLen = iso[p + 32]!;
      const su = p + 33 + nameLen + (nameLen % 2 === 0 ? 1 : 0);
      if (su < p + len) susp(su, p + len, 0);
      const isDir = (iso[p + 25]! & 0x02) !== 0;
      const self = nameLen === 1 && (iso[p + 33] === 0 || iso[p + 33] === 1);
      if (isDir && !self) walkDir(iso.readUInt32LE(p + 2), iso.readUInt32LE(p + 10));
      p += len;
    }
  };

  for (let s = 16; (s + 1) * SECTOR <= iso.length; s++) {
    const vd = s * SECTOR;
    if (iso.toString('latin1', vd + 1, vd + 6) !== 'CD001') return;
    const type = iso[vd]!;
    if (type === 255) return;
    if (type !== 1 && type !== 2) continue;
    for (const at of [813, 830, 864]) { // creation, modification, effective; expiration stays unset
      if (!iso.subarray(vd + at, vd + at + 17).equals(unsetLong)) put(long, vd + at);
    }
    const root = vd + 156;
    put(short, root + 18);
    walkDir(iso.readUInt32LE(root + 2), iso.readUInt32LE(root + 10));
  }
}
