// The guest kit on this node (node-install/build-guest-kit.sh writes it): the files a sandboxed
// pod's VM boots from. Checked when a pod VM is made, so a node without it refuses with the fix.
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition } from '../errors.js';
import { fileReader, pvhNote } from '../util/elf-pvh.js';
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
 * Whether an x86-64 kernel has the PVH entry note (Xen ELF note type 18,
 * XEN_ELFNOTE_PHYS32_ENTRY), which QEMU needs to boot an uncompressed vmlinux with -kernel.
 * Reads only the headers and the PT_NOTE segments. Throws on a file that is not such an ELF.
 */
export async function hasPvhNote(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const r = await pvhNote(fileReader(fh));
    if (r !== true && r.notElf) throw failedPrecondition(`${path} is ${r.not}`);
    return r === true;
  } finally {
    await fh.close();
  }
}
