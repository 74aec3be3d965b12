// Host paths of CRI mounts (emptyDir, hostPath, configMap, the kubelet's /etc/hosts and
// termination log, …) reach a sandboxed pod's containers through one read-write 9p share per pod,
// `<sandbox dir>/shared` (tag vmlet-shared, /run/vmlet/shared in the guest): each mount is a bind
// mount of its host path at shared/<container id>/<n>, read-only on the host when the CRI mount is,
// so a guest cannot write where the kubelet said it may not. QEMU lives in its own mount namespace
// (libvirt's default), a copy taken at its start: the share is made a shared mount point before
// QEMU starts, so the binds made later propagate into QEMU's copy. Bind mounts only, no loop devices.
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { VmletError } from '../errors.js';
import { mountsUnder } from '../util/mountinfo.js';

export const SHARED_TAG = 'vmlet-shared';
export const GUEST_SHARED_DIR = '/run/vmlet/shared';

async function mount(args: string[]): Promise<void> {
  try {
    await execa('mount', args);
  } catch (err) {
    throw new VmletError('internal', `mount ${args.join(' ')}: ${(err as { stderr?: string }).stderr || (err as Error).message}`);
  }
}

/** Before the pod VM starts: the share dir, bound onto itself and made a shared mount point. */
export async function preparePodShare(share: string): Promise<void> {
  await mkdir(share, { recursive: true, mode: 0o700 });
  await mount(['--bind', share, share]);
  await mount(['--make-shared', share]);
}

/** Unmounts everything under the share and the share itself, then removes it. Idempotent. */
export async function releasePodShare(share: string): Promise<void> {
  await unmountTree(share);
  await rm(share, { recursive: true, force: true });
}

/**
 * `dst`, a read-only bind mount of `src` (made unless `dst` is one already): what a virtiofs
 * share serves when the guest must not write (virtiofs has no read-only mode). New entries under
 * `src` show through it (one file system).
 */
export function readOnlyView(src: string, dst: string): Promise<string> {
  // One at a time per dst: two VMs starting at once must not both bind it (one would be stacked, and left).
  let p = viewsInFlight.get(dst);
  if (!p) {
    p = makeReadOnlyView(src, dst).finally(() => viewsInFlight.delete(dst));
    viewsInFlight.set(dst, p);
  }
  return p;
}

const viewsInFlight = new Map<string, Promise<string>>();

async function makeReadOnlyView(src: string, dst: string): Promise<string> {
  if (mountsUnder(dst).includes(dst)) return dst;
  await mkdir(dst, { recursive: true, mode: 0o700 });
  await mount(['--bind', src, dst]);
  await mount(['-o', 'remount,bind,ro', dst]);
  return dst;
}

/** Removes a tree that may hold bind mounts (a VM-image container's read-only shares): unmounted first, never removed through one. */
export async function removeUnmounted(path: string): Promise<void> {
  await unmountTree(path);
  await rm(path, { recursive: true, force: true });
}

/**
 * Lazily unmounts every mount at or below `path`, then checks none is left: what follows removes
 * the tree, and must never reach into a host directory still bound there.
 */
async function unmountTree(path: string): Promise<void> {
  for (let round = 0; round < 4; round++) {
    const left = mountsUnder(path);
    if (left.length === 0) return;
    for (const p of left) await execa('umount', ['-l', p], { reject: false });
  }
  const left = mountsUnder(path);
  if (left.length) throw new VmletError('internal', `cannot unmount ${left.join(', ')}; left in place (not removed)`);
}

export interface SharedMount {
  hostPath: string;
  readonly: boolean;
}

/**
 * Binds each host path into shared/<container id>/<n>; returns the guest paths, in order. A
 * missing host path is made as a directory (containerd does the same). A failure undoes the binds
 * already made.
 */
export async function bindContainerMounts(share: string, containerId: string, mounts: SharedMount[]): Promise<string[]> {
  const dir = join(share, containerId);
  const out: string[] = [];
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const [i, m] of mounts.entries()) {
      // stat, not lstat: a host path that is a symlink is bound as what it points to (mount does so).
      const st = await stat(m.hostPath).catch(() => undefined);
      if (!st) await mkdir(m.hostPath, { recursive: true });
      const target = join(dir, String(i));
      if (st && !st.isDirectory()) await writeFile(target, '', { flag: 'a' });
      else await mkdir(target);
      await mount(['--bind', m.hostPath, target]);
      if (m.readonly) await mount(['-o', 'remount,bind,ro', target]);
      out.push(`${GUEST_SHARED_DIR}/${containerId}/${i}`);
    }
    return out;
  } catch (err) {
    await unbindContainerMounts(share, containerId);
    throw err;
  }
}

/** Unmounts and removes shared/<container id>. Idempotent. */
export async function unbindContainerMounts(share: string, containerId: string): Promise<void> {
  const dir = join(share, containerId);
  await unmountTree(dir);
  await rm(dir, { recursive: true, force: true });
}
