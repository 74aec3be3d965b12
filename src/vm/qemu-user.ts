// Who a VM's QEMU runs as (docs/security.md). vmlet names it in each domain (a static DAC
// <seclabel>), so qemu.conf's `user` does not decide it: libvirt's unprivileged qemu user
// (config qemuUser, libvirt-qemu by default) for every VM that can run so, root only for a VM
// whose 9p shares need root's reach (passthrough owners both ways, root-only files).
// libvirt chowns the files it is given (disks, kernel, initrd, seed ISO, nvram) to that user for
// the VM's run and back after it; the directories on their way are vmlet's to open (qemuDirs),
// and the sockets QEMU creates get a directory of QEMU's own (socketDirFor).
import { chown, chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { VmletError } from '../errors.js';

export interface QemuIdentity {
  user: string;
  uid: number;
  gid: number;
}

/** config qemuUser's default (config.ts). */
export const DEFAULT_QEMU_USER = 'libvirt-qemu';

export const ROOT: QemuIdentity = Object.freeze({ user: 'root', uid: 0, gid: 0 });

/** `user` from /etc/passwd (uid and primary gid), or a numeric uid as given (gid = uid's passwd gid, or the uid). */
export async function resolveQemuUser(user: string, passwdFile = '/etc/passwd'): Promise<QemuIdentity> {
  if (user === 'root' || user === '0') return ROOT;
  const text = await readFile(passwdFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === user || (/^\d+$/.test(user) && uid === user)) return { user: name, uid: Number(uid), gid: Number(gid) };
  }
  if (/^\d+$/.test(user)) return { user, uid: Number(user), gid: Number(user) };
  throw new VmletError('failed-precondition', `config qemuUser: user ${user} is not in ${passwdFile}: allowed an existing user (libvirt's qemu user: libvirt-qemu on Debian and Ubuntu, qemu elsewhere) or root`);
}

type FileOwners = { mode: number; uid: number; gid: number };

/** The rwx bits that apply to `id`: the owner's, else the group's (primary gid only), else others'. */
function permsFor(st: FileOwners, id: QemuIdentity): number {
  return (st.mode >> (st.uid === id.uid ? 6 : st.gid === id.gid ? 3 : 0)) & 7;
}

/**
 * The first of `dir` and its parents that `id` cannot pass through (owner, group or other
 * search bit, as the kernel checks them without ACLs or supplementary groups), or undefined.
 */
export async function unreachableFor(dir: string, id: QemuIdentity): Promise<{ dir: string; mode: string } | undefined> {
  if (id.uid === 0) return undefined;
  for (let d = resolve(dir); ; d = dirname(d)) {
    const st = await stat(d).catch(() => undefined);
    if (st && !(permsFor(st, id) & 1)) return { dir: d, mode: (st.mode & 0o7777).toString(8).padStart(4, '0') };
    if (d === dirname(d)) return undefined;
  }
}

/** The label libvirt runs the domain's QEMU under and chowns its files to. */
export function dacLabel(id: QemuIdentity): string {
  return `+${id.uid}:+${id.gid}`;
}

/**
 * Directories QEMU must pass through to reach the files libvirt labels for it: root's, group
 * QEMU's (0710, search only, no listing) when QEMU is not root; root's 0700 otherwise.
 */
export async function qemuDirs(dirs: readonly string[], id: QemuIdentity): Promise<void> {
  for (const d of dirs) {
    if (id.uid === 0) continue;
    await chown(d, 0, id.gid);
    await chmod(d, 0o710);
  }
}

/** A root dir every user may pass through (not list): the fallback socket dirs' parents under /run/vmlet. */
export async function searchableDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o711 });
  await chmod(dir, 0o711); // made 0700 by a vmlet that ran QEMU as root
}

/**
 * A directory QEMU creates its sockets in (the guest agent's, VNC's), one per VM: QEMU's own,
 * 0700, so no other user can put a socket in its place. Every VM's QEMU is the same user, as in
 * libvirt's own model (each one's disks are that user's too): what keeps one QEMU from another's
 * files is the MAC driver's per-VM label where the host has one (docs/security.md).
 */
export async function socketDirFor(dir: string, id: QemuIdentity): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chown(dir, id.uid, id.gid);
  await chmod(dir, 0o700);
}

/**
 * The user VMs' QEMU runs as on this node: config qemuUser, which must exist and reach the state
 * dir. The default one missing or out of reach (libvirt's package not installed the usual way, a
 * state dir under a private parent) gives root, with the reason in `fallback`; a user the
 * operator named throws.
 */
export async function decideQemuUser(config: { qemuUser: string; stateDir: string }, passwdFile?: string): Promise<{ id: QemuIdentity; fallback?: string }> {
  try {
    const id = await resolveQemuUser(config.qemuUser, passwdFile);
    const blocked = await unreachableFor(config.stateDir, id);
    if (blocked) {
      throw new VmletError('failed-precondition', `config stateDir ${config.stateDir} is out of reach for QEMU's user ${id.user}: ${blocked.dir} is mode ${blocked.mode} (allowed: a stateDir whose parents others may search, o+x, as /var/lib)`);
    }
    return { id };
  } catch (err) {
    if (config.qemuUser !== DEFAULT_QEMU_USER) throw err;
    return { id: ROOT, fallback: (err as Error).message };
  }
}

/** Read-write access to a file for `id` by its mode bits, as the kernel checks them without ACLs. */
export function canReadWrite(st: FileOwners, id: QemuIdentity): boolean {
  return id.uid === 0 || (permsFor(st, id) & 6) === 6;
}

/**
 * Why QEMU's user cannot open /dev/kvm, or undefined (no /dev/kvm, or it can). Without udev (a
 * node with no systemd, a container) the kernel leaves /dev/kvm root's 0600, where distributions'
 * udev rules make it root:kvm 0660. Then QEMU cannot use KVM, and libvirt, whose QEMU probe
 * still reports KVM while its own check says QEMU's user cannot open the device, deems its
 * capability cache stale at every lookup and probes QEMU again at each domain define (8.6 s a
 * define on this project's 2-core machine, 0.02 s with the device root:kvm 0660).
 */
export async function kvmDeviceProblem(id: QemuIdentity, path = '/dev/kvm'): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st || canReadWrite(st, id)) return undefined;
  const group = st.gid === id.gid ? `group ${st.gid}` : `gid ${st.gid}`;
  return `${path} is mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, uid ${st.uid}, ${group}: QEMU's user ${id.user} (uid ${id.uid}, gid ${id.gid}) cannot open it, so VMs cannot use KVM and libvirt probes QEMU again at every domain define (seconds each)`;
}

/** What makes /dev/kvm QEMU's, as distributions' udev rules do. */
export const KVM_DEVICE_FIX = 'chgrp kvm /dev/kvm && chmod 0660 /dev/kvm (node-install/start-daemons.sh does it at every start where no udev rule does)';
