// Whether an x86-64 ELF kernel has the PVH entry note QEMU needs to boot it with -kernel (Xen's
// XEN_ELFNOTE_PHYS32_ENTRY, in a PT_NOTE segment, where QEMU looks for it). Used for the guest
// kit's vmlinux (doctor) and for the ELF unpacked from a kernel-boot image's bzImage.
import type { FileHandle } from 'node:fs/promises';

/** Reads `length` bytes at `offset` (fewer at the end of the file). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** A note segment larger than this is not read (Linux's are a few hundred bytes). */
const MAX_NOTES = 1024 * 1024;
/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit entry point QEMU's PVH boot jumps to. */
const PHYS32_ENTRY = 18;

const align4 = (n: number) => (n + 3) & ~3;

/**
 * true, or why not: `notElf` when the file is not a little-endian x86-64 ELF at all (`not` then
 * reads "not an ELF file" or "not a little-endian x86-64 ELF").
 */
export async function pvhNote(read: ReadAt): Promise<true | { not: string; notElf?: true }> {
  const eh = await read(0, 64);
  if (eh.length < 64 || eh.readUInt32BE(0) !== 0x7f454c46) return { not: 'not an ELF file', notElf: true };
  if (eh[4] !== 2 || eh[5] !== 1 || eh.readUInt16LE(18) !== 62) return { not: 'not a little-endian x86-64 ELF', notElf: true };
  const phoff = Number(eh.readBigUInt64LE(32));
  const phentsize = eh.readUInt16LE(54);
  const phnum = eh.readUInt16LE(56);
  if (phentsize < 56) return { not: 'its program headers are malformed' };
  const phs = await read(phoff, phnum * phentsize);
  if (phs.length < phnum * phentsize) return { not: 'its program headers lie outside the file' };
  for (let i = 0; i < phnum; i++) {
    const ph = i * phentsize;
    if (phs.readUInt32LE(ph) !== 4) continue; // PT_NOTE
    const size = Number(phs.readBigUInt64LE(ph + 32));
    if (size > MAX_NOTES) return { not: `a note segment of ${size} bytes` };
    const notes = await read(Number(phs.readBigUInt64LE(ph + 8)), size);
    if (notes.length < size) return { not: 'a note segment lies outside the file' };
    for (let at = 0; at + 12 <= notes.length; ) {
      const namesz = notes.readUInt32LE(at);
      const descsz = notes.readUInt32LE(at + 4);
      const type = notes.readUInt32LE(at + 8);
      const name = notes.toString('latin1', at + 12, Math.min(notes.length, at + 12 + namesz)).replace(/\0+$/, '');
      if (name === 'Xen' && type === PHYS32_ENTRY) return true;
      at += 12 + align4(namesz) + align4(descsz);
    }
  }
  return { not: 'the kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY; built without CONFIG_PVH)' };
}

/** A ReadAt over a buffer (a whole file in memory). */
export const bufferReader =
  (b: Buffer): ReadAt =>
  async (offset, length) =>
    b.subarray(Math.min(offset, b.length), Math.min(offset + length, b.length));

/** A ReadAt over an open file. */
export const fileReader =
  (f: FileHandle): ReadAt =>
  async (offset, length) => {
    const b = Buffer.alloc(length);
    const { bytesRead } = await f.read(b, 0, length, offset);
    return b.subarray(0, bytesRead);
  };
