// The guest kit on this node (node-install/build-guest-kit.sh writes it): the files a sandboxed
// pod's VM boots from. Checked when a pod VM is made, so a node without it refuses with the fix.
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition } from '../errors.js';
import type { GuestKit } from './pod-vm-spec.js';

export interface InstalledKit extends GuestKit {
  version: string;
}

export async function readGuestKit(dir: string): Promise<InstalledKit> {
  const vmlinux = join(dir, 'vmlinux');
  const initrd = join(dir, 'initrd.img');
  try {
    await Promise.all([stat(vmlinux), stat(initrd)]);
    const [cmdline, version] = await Promise.all([readFile(join(dir, 'cmdline'), 'utf8'), readFile(join(dir, 'VERSION'), 'utf8').catch(() => 'unknown')]);
    return { vmlinux, initrd, cmdline: cmdline.trim(), version: version.trim() };
  } catch (err) {
    throw failedPrecondition(
      `the guest kit sandboxed pods boot from is not in ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): run node-install/install.sh, or set guestKitDir in /etc/vmlet/config.yaml`,
    );
  }
}

/** Reads `length` bytes at `offset` (fewer at the end of the file). */
export async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * Whether an ELF64 little-endian kernel has the PVH entry note (Xen ELF note type 18,
 * XEN_ELFNOTE_PHYS32_ENTRY), which QEMU needs to boot an uncompressed vmlinux with -kernel.
 * Reads only the headers and the PT_NOTE segments. Throws on a file that is not such an ELF.
 */
export async function hasPvhNote(path: string): Promise<boolean> {
  const eh = await readAt(path, 0, 64);
  if (eh.length < 64 || eh.readUInt32BE(0) !== 0x7f454c46) throw failedPrecondition(`${path} is not an ELF file`);
  if (eh[4] !== 2 || eh[5] !== 1) throw failedPrecondition(`${path} is not a 64-bit little-endian ELF file`);
  const phoff = Number(eh.readBigUInt64LE(32));
  const phentsize = eh.readUInt16LE(54);
  const phnum = eh.readUInt16LE(56);
  const ph = await readAt(path, phoff, phentsize * phnum);
  for (let i = 0; i < phnum && (i + 1) * phentsize <= ph.length; i++) {
    const p = ph.subarray(i * phentsize);
    if (p.readUInt32LE(0) !== 4) continue; // PT_NOTE
    const size = Math.min(Number(p.readBigUInt64LE(32)), 1 << 20);
    const notes = await readAt(path, Number(p.readBigUInt64LE(8)), size);
    for (let o = 0; o + 12 <= notes.length; ) {
      const namesz = notes.readUInt32LE(o), descsz = notes.readUInt32LE(o + 4), type = notes.readUInt32LE(o + 8);
      const name = notes.subarray(o + 12, o + 12 + namesz).toString('latin1').replace(/\0+$/, '');
      if (name === 'Xen' && type === 18) return true;
      o += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}
