// The guest kit on this node (node-install/build-guest-kit.sh writes it): the files a sandboxed
// pod's VM boots from. Checked when a pod VM is made, so a node without it refuses with the fix.
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition } from '../errors.js';
import { fileReader, pvhNote } from '../util/elf-pvh.js';
import type { GuestKit } from './pod-vm-spec.js';
import type { RootfsFormat } from '../image/rootfs-protocol.js';

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

/** What the guest kit in `dir` can do beyond booting (its `features` file; none for a kit older than the file). */
export async function kitFeatures(dir: string): Promise<Set<string>> {
  const text = await readFile(join(dir, 'features'), 'utf8').catch(() => '');
  return new Set(text.split('\n').map((l) => l.trim()).filter(Boolean));
}

/**
 * The image rootfs format to use: the config's, except erofs with an installed kit too old to
 * mount EROFS images (`fallback` then says so), where sandboxed pods get trees. A node without a
 * kit keeps the config's: it runs no sandboxed pod.
 */
export async function imageRootfsFormat(asked: RootfsFormat, kitDir: string): Promise<{ format: RootfsFormat; fallback?: string }> {
  if (asked !== 'erofs' || (await kitFeatures(kitDir)).has('erofs')) return { format: asked };
  const installed = await readFile(join(kitDir, 'VERSION'), 'utf8').then(
    () => true,
    () => false,
  );
  if (!installed) return { format: asked };
  return { format: 'tree', fallback: `the guest kit in ${kitDir} cannot mount EROFS images (built by an older vmlet): image rootfs are made as trees; rebuild it with node-install/install.sh (node-install/build-guest-kit.sh)` };
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
