// qemu-img through execa (never a shell): probing image files, making overlays.
// A containerDisk comes from a registry: its bytes are untrusted. So vmlet reads the format from
// the magic itself and pins it with -f (qemu-img's own probing parses a dozen formats, some of
// which open other files, e.g. a vmdk descriptor's extents), refuses a qcow2 header that names a
// backing or external data file before qemu-img opens anything, and runs `qemu-img info` with
// --force-share (no image lock is taken or needed) under an address-space and CPU-time limit, as
// QEMU's docs advise for untrusted images (1 GiB and 10 s, the figures of libguestfs and OpenStack).
import { open } from 'node:fs/promises';
import { execa, type ExecaError } from 'execa';
import { VmletError } from '../errors.js';
import { QEMU_IMG, which } from '../util/binaries.js';

export interface DiskInfo {
  format: string;
  virtualSize: number;
  backingFile?: string;
  /** qcow2 external data file: like a backing file, a way to reach files outside the image. */
  dataFile?: string;
}

export interface QemuImgLimits {
  /** RLIMIT_AS of the qemu-img process. */
  addressSpaceBytes: number;
  /** RLIMIT_CPU of the qemu-img process. */
  cpuSeconds: number;
}

export const QEMU_IMG_INFO_LIMITS: Readonly<QemuImgLimits> = Object.freeze({ addressSpaceBytes: 1024 ** 3, cpuSeconds: 10 });

/** What the first bytes of a disk file say it is. */
export interface DiskProbe {
  /** 'qcow2' or 'raw' (what vmlet boots), or the name of another format it recognised. */
  format: string;
  backingFile?: string;
  dataFile?: string;
}

const QCOW_MAGIC = 0x514649fb; // "QFI\xfb"
/** qcow2 incompatible feature bit 2: guest data lives in an external file. */
const QCOW2_INCOMPAT_DATA_FILE = 1n << 2n;
const QCOW2_EXT_DATA_FILE = 0x44415441; // "DATA"
/** Bytes read to probe: qcow2's header and extensions live in its first cluster (≥ 512 bytes). */
export const PROBE_BYTES = 64 * 1024;

/** Formats qemu-img would recognise by their first bytes (which vmlet refuses by name). */
const OTHER_MAGICS: [string, (b: Buffer) => boolean][] = [
  ['vmdk', (b) => ['KDMV', 'COWD', '# Disk DescriptorFile'].some((m) => b.subarray(0, m.length).toString('latin1') === m)],
  ['vhdx', (b) => b.subarray(0, 8).toString('latin1') === 'vhdxfile'],
  ['vpc', (b) => b.subarray(0, 8).toString('latin1') === 'conectix'],
  ['vdi', (b) => b.length >= 0x44 && b.readUInt32LE(0x40) === 0xbeda107f],
  ['qed', (b) => b.subarray(0, 4).toString('latin1') === 'QED\0'],
  ['luks', (b) => b.subarray(0, 6).equals(Buffer.from('LUKS\xba\xbe', 'latin1'))],
  ['parallels', (b) => ['WithoutFreeSpace', 'WithouFreSpacExt'].includes(b.subarray(0, 16).toString('latin1'))],
  ['bochs', (b) => b.subarray(0, 22).toString('latin1') === 'Bochs Virtual HD Image'],
  ['cloop', (b) => b.subarray(0, 9).toString('latin1') === '#!/bin/sh' && b.includes('cloop')],
];

/**
 * The format of a disk from its first bytes (`head`, up to PROBE_BYTES) and, for qcow2, the backing
 * and external data files its header names. Pure: no file is opened. Anything not recognised is raw,
 * which is what it is to a VM given `format='raw'`.
 */
export function probeDiskBytes(head: Buffer): DiskProbe {
  if (head.length >= 4 && head.readUInt32BE(0) === QCOW_MAGIC) {
    const version = head.length >= 8 ? head.readUInt32BE(4) : 0;
    if (version !== 2 && version !== 3) return { format: version === 1 ? 'qcow' : `qcow version ${version}` };
    if (head.length < 72) throw new VmletError('invalid-argument', 'qcow2 header is truncated');
    const probe: DiskProbe = { format: 'qcow2' };
    const backingOffset = head.readBigUInt64BE(8);
    const backingSize = head.readUInt32BE(16);
    if (backingOffset !== 0n) {
      // Named whatever the name's bytes are: the refusal must not depend on reading it.
      const at = Number(backingOffset);
      probe.backingFile = at + backingSize <= head.length && backingSize > 0 ? head.subarray(at, at + backingSize).toString('utf8') : `<${backingSize} bytes at offset ${backingOffset}>`;
    }
    if (version === 3 && head.length >= 104) {
      if (head.readBigUInt64BE(72) & QCOW2_INCOMPAT_DATA_FILE) probe.dataFile = '<external data file>';
      // Header extensions start after the header (its length at offset 100) and name the data file.
      let off = head.readUInt32BE(100);
      while (off + 8 <= head.length) {
        const type = head.readUInt32BE(off);
        const len = head.readUInt32BE(off + 4);
        if (type === 0) break;
        if (type === QCOW2_EXT_DATA_FILE) probe.dataFile = head.subarray(off + 8, Math.min(off + 8 + len, head.length)).toString('utf8');
        off += 8 + Math.ceil(len / 8) * 8;
      }
    }
    return probe;
  }
  for (const [name, test] of OTHER_MAGICS) if (test(head)) return { format: name };
  return { format: 'raw' };
}

/** probeDiskBytes on the first PROBE_BYTES of a file. */
export async function probeDisk(path: string): Promise<DiskProbe> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(PROBE_BYTES);
    const { bytesRead } = await fh.read(buf, 0, PROBE_BYTES, 0);
    return probeDiskBytes(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/**
 * `qemu-img info` of a file in a format vmlet already knows, with --force-share, under `limits`
 * (prlimit from util-linux; without it, the shell's ulimit, the arguments passed as "$@").
 */
export async function qemuImgInfo(path: string, format: 'qcow2' | 'raw', limits: QemuImgLimits = QEMU_IMG_INFO_LIMITS): Promise<DiskInfo> {
  const qemuImg = which(QEMU_IMG) ?? QEMU_IMG;
  const args = ['info', '-f', format, '--force-share', '--output=json', path];
  const prlimit = which('prlimit');
  const [cmd, argv] = prlimit
    ? [prlimit, [`--as=${limits.addressSpaceBytes}`, `--cpu=${limits.cpuSeconds}`, '--', qemuImg, ...args]]
    : ['/bin/sh', ['-c', `ulimit -v ${Math.floor(limits.addressSpaceBytes / 1024)} -t ${limits.cpuSeconds} && exec "$@"`, 'sh', qemuImg, ...args]];
  let stdout: string;
  try {
    ({ stdout } = await execa(cmd, argv, { timeout: 60_000 }));
  } catch (err) {
    const e = err as { stderr?: string; signal?: string; shortMessage?: string };
    const why = e.signal ? `killed by ${e.signal}` : (e.stderr?.trim().split('\n').pop() ?? e.shortMessage ?? String(err));
    throw new VmletError(
      'invalid-argument',
      `qemu-img info could not read the disk within its limits (${limits.addressSpaceBytes / 1024 ** 2} MiB of address space, ${limits.cpuSeconds} s of CPU): ${why}`,
    );
  }
  const j = JSON.parse(stdout) as {
    format: string;
    'virtual-size': number;
    'backing-filename'?: string;
    'format-specific'?: { data?: { 'data-file'?: string } };
  };
  return {
    format: j.format,
    virtualSize: j['virtual-size'],
    ...(j['backing-filename'] ? { backingFile: j['backing-filename'] } : {}),
    ...(j['format-specific']?.data?.['data-file'] ? { dataFile: j['format-specific'].data['data-file'] } : {}),
  };
}

/** A qcow2 overlay on a read-only base: the VM writes here, the base stays shared. */
export async function createOverlay(path: string, base: string, baseFormat: 'qcow2' | 'raw', sizeBytes?: number): Promise<void> {
  const args = ['create', '-q', '-f', 'qcow2', '-b', base, '-F', baseFormat, path];
  if (sizeBytes !== undefined) args.push(String(sizeBytes));
  try {
    await execa(which(QEMU_IMG) ?? QEMU_IMG, args, { timeout: 60_000 });
  } catch (err) {
    const stderr = String((err as ExecaError).stderr ?? '').trim();
    if (/No space left on device|Disk quota exceeded/.test(stderr)) throw new VmletError('resource-exhausted', `qemu-img create ${path}: ${stderr.split('\n').at(-1)}`, { cause: err });
    throw err;
  }
}
