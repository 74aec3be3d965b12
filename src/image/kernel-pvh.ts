// A kernel-boot image's bzImage as the ELF inside it, which QEMU boots through its PVH entry:
// no SeaBIOS, no option ROM, no decompression in the guest. Measured on this project's 2-core
// TCG machine with Debian 12's kernel (bench/kernel-boot.ts): ready marker in 3.15 s from the
// ELF against 5.84 s from the bzImage (medians); the unpacking ~1 s. Done once per image, at pull; any kernel this cannot
// convert (no PVH entry note, a compression vmlet does not read, a malformed header) boots as
// the bzImage it is.
//
// bzImage layout (Documentation/arch/x86/boot.rst): the setup code is (setup_sects + 1) sectors;
// at 0x248/0x24c the header gives the compressed payload's offset (from the end of the setup)
// and length. The kernel's build appends the uncompressed size (u32, little endian) to every
// payload, so the stream is the payload less its last 4 bytes, and its output must be that long.
import { createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform, type Duplex } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { which } from '../util/binaries.js';
import { fileReader, pvhNote, type ReadAt } from '../util/elf-pvh.js';
import { VmletError } from '../errors.js';
import { decompressProcess } from './decompress-process.js';

/** Larger kernels than this are not unpacked (Debian's is 66 MB). */
export const MAX_VMLINUX_BYTES = 512 * 1024 * 1024;
/** Only the bzImage's header is read whole first; its payload is read once it is known. */
const HEADER_BYTES = 0x268;

export type PayloadCompression = 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'lzma' | 'lzo' | 'lz4' | 'unknown';

export interface BzImagePayload {
  /** Byte offset of the compressed payload in the file. */
  offset: number;
  /** Its length without the appended size. */
  length: number;
  compression: PayloadCompression;
}

/** Why an ELF kernel is not unpacked: nothing to say about it at the pull. */
export const ALREADY_ELF = 'an ELF kernel already: booted as it is';

/** Where a bzImage's payload is, or why `head` (its first HEADER_BYTES) is not a bzImage vmlet can read. */
export function bzImagePayload(head: Buffer, fileSize: number): BzImagePayload | { not: string } {
  if (head.readUInt32BE(0) === 0x7f454c46) return { not: ALREADY_ELF };
  if (head.length < HEADER_BYTES) return { not: 'shorter than a bzImage header' };
  if (head.readUInt16LE(0x1fe) !== 0xaa55 || head.toString('latin1', 0x202, 0x206) !== 'HdrS') return { not: 'not a bzImage (no boot sector signature and HdrS header)' };
  const version = head.readUInt16LE(0x206);
  if (version < 0x0208) return { not: `boot protocol ${version >> 8}.${version & 0xff} (2.08 or later gives the payload's place)` };
  const setupSects = head.readUInt8(0x1f1) || 4;
  const offset = (setupSects + 1) * 512 + head.readUInt32LE(0x248);
  const withSize = head.readUInt32LE(0x24c);
  if (withSize <= 4 || offset + withSize > fileSize) return { not: `its payload (${withSize} bytes at ${offset}) lies outside the ${fileSize}-byte file` };
  return { offset, length: withSize - 4, compression: 'unknown' };
}

/** The compression a payload's first bytes name (the kernel's own choices: arch/x86/boot/compressed). */
export function payloadCompression(b: Buffer): PayloadCompression {
  const starts = (...bytes: number[]) => bytes.every((x, i) => b[i] === x);
  if (starts(0x1f, 0x8b)) return 'gzip';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz';
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd';
  if (starts(0x42, 0x5a, 0x68)) return 'bzip2';
  if (starts(0x5d, 0x00, 0x00)) return 'lzma';
  if (starts(0x89, 0x4c, 0x5a, 0x4f)) return 'lzo';
  if (starts(0x02, 0x21, 0x4c, 0x18)) return 'lz4';
  return 'unknown';
}

/** Whether the unpacked payload is an ELF QEMU can boot through PVH; else why not. */
export async function pvhEntry(read: ReadAt): Promise<true | { not: string }> {
  const r = await pvhNote(read);
  return r === true ? r : { not: r.notElf ? `the payload is ${r.not}` : r.not };
}

export type PvhResult = { path: string; compression: PayloadCompression; bytes: number } | { not: string };

/**
 * Unpacks the bzImage at `kernel` to `out` when QEMU can boot the result through PVH; otherwise
 * says why not and leaves no `out`. Errors of the node itself (no space) are thrown.
 */
export async function unpackPvhKernel(kernel: string, out: string, o: { findProgram?: (name: string) => string | undefined } = {}): Promise<PvhResult> {
  const f = await open(kernel, 'r');
  try {
    const size = (await f.stat()).size;
    const head = Buffer.alloc(HEADER_BYTES);
    await f.read(head, 0, HEADER_BYTES, 0);
    const p = bzImagePayload(head, size);
    if ('not' in p) return p;
    const payload = Buffer.alloc(p.length);
    await f.read(payload, 0, p.length, p.offset);
    const tail = Buffer.alloc(4);
    await f.read(tail, 0, 4, p.offset + p.length);
    const where = { ...p, compression: payloadCompression(payload) };
    const expect = tail.readUInt32LE(0);
    if (expect > MAX_VMLINUX_BYTES) return { not: `its payload says it unpacks to ${expect} bytes (at most ${MAX_VMLINUX_BYTES})` };
    const decompress = decompressor(where.compression, o.findProgram ?? which);
    if ('not' in decompress) return decompress;
    const tmp = `${out}.tmp`;
    try {
      const bytes = await unpack(payload, decompress.stream(), tmp, expect);
      if (typeof bytes === 'object') return bytes;
      const elf = await open(tmp, 'r');
      const pvh = await pvhEntry(fileReader(elf)).finally(() => elf.close());
      if (pvh !== true) return pvh;
      await rename(tmp, out);
      return { path: out, compression: where.compression, bytes };
    } finally {
      await rm(tmp, { force: true });
    }
  } finally {
    await f.close();
  }
}

function decompressor(c: PayloadCompression, findProgram: (name: string) => string | undefined): { stream: () => Duplex } | { not: string } {
  if (c === 'gzip') return { stream: () => createGunzip() };
  if (c === 'xz' || c === 'zstd') {
    const program = findProgram(c);
    if (!program) return { not: `its payload is ${c}-compressed and this node has no ${c} program` };
    // As nobody, no environment, failing unless it exits 0 (the words it says: the reason logged).
    return { stream: () => decompressProcess(program, ['-d', '-c', '-q'], c, (why) => new VmletError('invalid-argument', `${c} refused the kernel's payload: ${why}`)) };
  }
  return { not: `its payload is ${c === 'unknown' ? 'in a compression vmlet does not know' : `${c}-compressed, which vmlet does not unpack`}` };
}

/** Decompresses `payload` through `d` into `tmp`; the byte count, or why it is not the kernel it says. */
async function unpack(payload: Buffer, d: Duplex, tmp: string, expect: number): Promise<number | { not: string }> {
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _e, cb) {
      bytes += chunk.length;
      if (bytes > expect) cb(new VmletError('invalid-argument', `the payload unpacks to more than the ${expect} bytes it says`));
      else cb(null, chunk);
    },
  });
  try {
    await pipeline(Readable.from([payload]), d, count, createWriteStream(tmp, { mode: 0o444 }));
  } catch (err) {
    if (err instanceof VmletError || (err as NodeJS.ErrnoException).code?.startsWith('Z_')) return { not: `its payload does not unpack: ${(err as Error).message}` };
    throw err;
  }
  if (bytes !== expect) return { not: `its payload unpacks to ${bytes} bytes, not the ${expect} it says` };
  return bytes;
}
