// The kubelet's mounts and devices of a container, checked on the host before anything is made,
// and what a VM gets of them (docs/volumes.md): directories become 9p shares mounted at boot,
// config volumes (ConfigMap, Secret, projected token: the kubelet's `..data` layout) and single
// files are also copied into the cloud-init seed, block devices become virtio-blk disks. Every
// refusal names the mount by its container_path and says what is allowed.
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { isAbsolute, posix } from 'node:path';
import { invalidArgument } from '../errors.js';
import type { Logger } from '../log.js';
import { deviceSerial, shareTag, WRITE_FILES_CAP, WRITE_FILES_MAX_FILES, type GuestFile, type GuestMount } from '../vm/volumes.js';
import type { VmShare } from '../vm/spec.js';
import type { ContainerConfig, Mount } from './configs.js';

/** CRI Device (ContainerConfig.devices): the kubelet sends one per volumeDevice of a block PVC. */
export interface CriDevice {
  container_path: string;
  host_path: string;
  permissions: string;
}

/** A block device of the container, checked. */
export interface BlockVolume {
  containerPath: string;
  hostPath: string;
  serial: string;
  readonly: boolean;
  /** The host node's permission bits, owner and group (the guest's node gets the same). */
  mode: number;
  uid: number;
  gid: number;
}

export const devicesOf = (config: ContainerConfig): CriDevice[] => (config as ContainerConfig & { devices?: CriDevice[] | null }).devices ?? [];

const what = (st: Stats) =>
  st.isSocket() ? 'a socket' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : st.isDirectory() ? 'a directory' : 'a regular file';

/** Absolute, distinct container paths and absolute host paths: what both pod kinds need. */
function checkPaths(kind: 'mount' | 'device', items: Array<{ container_path?: string; host_path?: string }>, seen: Set<string>): void {
  for (const [i, it] of items.entries()) {
    const cp = it.container_path ?? '';
    const name = `${kind} ${JSON.stringify(cp)} (config.${kind}s[${i}])`;
    if (!isAbsolute(cp)) throw invalidArgument(`${name}: container_path must be an absolute path`);
    if (!isAbsolute(it.host_path ?? '')) throw invalidArgument(`${name}: host_path ${JSON.stringify(it.host_path ?? '')} must be an absolute path`);
    const norm = posix.normalize(cp);
    if (seen.has(norm)) throw invalidArgument(`${name}: container_path is given twice: allowed one mount or device per path`);
    seen.add(norm);
  }
}

async function statOf(kind: 'mount' | 'device', cp: string, hostPath: string): Promise<Stats> {
  try {
    return await stat(hostPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw invalidArgument(
      `${kind} ${JSON.stringify(cp)}: host_path ${hostPath} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}: allowed an existing ${kind === 'mount' ? 'directory or file (the kubelet makes volumes before CreateContainer)' : 'block device'}`,
    );
  }
}

/** The container's block devices, checked: each must exist and be a block device. */
export async function blockVolumes(config: ContainerConfig): Promise<BlockVolume[]> {
  const devices = devicesOf(config);
  checkPaths('device', devices, new Set((config.mounts ?? []).map((m) => posix.normalize(m.container_path ?? ''))));
  const out: BlockVolume[] = [];
  const serials = new Map<string, string>();
  for (const d of devices) {
    const st = await statOf('device', d.container_path, d.host_path);
    if (!st.isBlockDevice()) {
      throw invalidArgument(`device ${JSON.stringify(d.container_path)}: host_path ${d.host_path} is ${what(st)}: allowed block devices only (volumeDevices of a block PersistentVolume)`);
    }
    const perms = d.permissions || 'rwm';
    if (!/^[rwm]+$/.test(perms)) throw invalidArgument(`device ${JSON.stringify(d.container_path)}: permissions ${JSON.stringify(d.permissions)}: allowed a combination of r, w and m`);
    const serial = deviceSerial(d.host_path);
    const other = serials.get(serial);
    if (other !== undefined) {
      throw invalidArgument(`device ${JSON.stringify(d.container_path)}: host_path ${d.host_path} is the same volume as device ${JSON.stringify(other)}: allowed one container path per block volume`);
    }
    serials.set(serial, d.container_path);
    out.push({ containerPath: d.container_path, hostPath: d.host_path, serial, readonly: !perms.includes('w'), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
  }
  return out;
}

/** Sandboxed pods: every mount's paths, and its host path exists (vmlet makes nothing on the host for it). */
export async function checkSandboxedMounts(config: ContainerConfig): Promise<void> {
  const mounts = config.mounts ?? [];
  checkPaths('mount', mounts, new Set());
  for (const m of mounts) await statOf('mount', m.container_path, m.host_path);
}

/** What a VM-image pod's VM gets of the container's mounts. */
export interface VmMounts {
  shares: VmShare[];
  /** The same shares, as the guest mounts them at boot. */
  guestMounts: GuestMount[];
  files: GuestFile[];
}

/**
 * VM-image pods: a directory becomes a share at container_path (virtiofs when the node has
 * `virtiofsd`, else 9p); a config volume's files are
 * also written at boot while the container's total stays under WRITE_FILES_CAP (a bigger one is
 * shared only); a single file is written at boot only (9p shares directories), and must fit.
 */
export async function vmMounts(config: ContainerConfig, log: Logger, ids: { containerId: string; podSandboxId: string }, virtiofsd?: string): Promise<VmMounts> {
  const mounts = config.mounts ?? [];
  checkPaths('mount', mounts, new Set());
  const out: VmMounts = { shares: [], guestMounts: [], files: [] };
  let budget = WRITE_FILES_CAP;
  for (const m of mounts) {
    const name = `mount ${JSON.stringify(m.container_path)}`;
    if (m.propagation === 'PROPAGATION_BIDIRECTIONAL') {
      throw invalidArgument(`${name}: propagation Bidirectional cannot reach the host from a VM (mounts made in the guest stay there): allowed None or HostToContainer`);
    }
    const st = await statOf('mount', m.container_path, m.host_path);
    if (st.isDirectory()) {
      const tag = shareTag(m.container_path);
      out.shares.push({ source: m.host_path, tag, readonly: !!m.readonly, ...(virtiofsd ? { virtiofs: { binary: virtiofsd } } : {}) });
      out.guestMounts.push({ tag, path: m.container_path, readonly: !!m.readonly, ...(virtiofsd ? { virtiofs: true } : {}) });
      const files = await configFiles(m);
      if (files) {
        const bytes = files.reduce((n, f) => n + f.content.length, 0);
        if (bytes <= budget) {
          out.files.push(...files);
          budget -= bytes;
        } else {
          log.warn({ ...ids, mount: m.container_path, bytes, capBytes: WRITE_FILES_CAP }, 'config volume too big for the cloud-init seed: shared only');
        }
      }
    } else if (st.isFile()) {
      if (st.size > budget) {
        throw invalidArgument(`${name}: host_path ${m.host_path} is a file of ${st.size} bytes; a VM gets single files copied at boot, ${WRITE_FILES_CAP} bytes in all per container: allowed a smaller file, or mount its directory (shared)`);
      }
      out.files.push({ path: m.container_path, content: await readFile(m.host_path), mode: st.mode & 0o7777 });
      budget -= st.size;
    } else {
      throw invalidArgument(`${name}: host_path ${m.host_path} is ${what(st)}, which a VM cannot be given: allowed a directory (shared) or a regular file (copied at boot)`);
    }
  }
  return out;
}

/**
 * The visible files of a kubelet config volume (its AtomicWriter layout: `..data` a symlink to
 * the current timestamped dir, each key a symlink through it), with their contents; undefined
 * for any other directory or one with more than WRITE_FILES_MAX_FILES files.
 */
async function configFiles(m: Mount): Promise<GuestFile[] | undefined> {
  const data = await lstat(`${m.host_path}/..data`).catch(() => undefined);
  if (!data?.isSymbolicLink()) return undefined;
  const out: GuestFile[] = [];
  const walk = async (rel: string): Promise<boolean> => {
    for (const e of await readdir(`${m.host_path}${rel}`)) {
      if (rel === '' && e.startsWith('..')) continue; // the kubelet's own entries
      const st = await stat(`${m.host_path}${rel}/${e}`).catch(() => undefined);
      if (st?.isDirectory()) {
        if (!(await walk(`${rel}/${e}`))) return false;
      } else if (st?.isFile()) {
        if (out.length >= WRITE_FILES_MAX_FILES) return false;
        out.push({ path: posix.join(m.container_path, rel, e), content: await readFile(`${m.host_path}${rel}/${e}`), mode: st.mode & 0o7777 });
      }
    }
    return true;
  };
  return (await walk('')) ? out : undefined;
}
