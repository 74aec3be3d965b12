// What a VM is given of the kubelet's volumes, as pure data: the mount tag of a shared
// directory, the virtio-blk serial of a block device, and the cloud-init entries that mount the
// shares and write the small config files at boot (docs/volumes.md). The host side (stat,
// reading the files) is pod/volumes.ts's.
import { createHash } from 'node:crypto';

/**
 * QEMU refuses a 9p mount tag over 31 bytes (virtiofs: 36). The tag holds a ':' on purpose: cloud-init's
 * `mounts` module keeps an fs_spec as written only when it looks like a network source (a ':'
 * in it); any other name it takes for a block device, finds none, and drops the entry.
 */
export const TAG_PREFIX = 'vmlet:';
/** virtio-blk exposes at most 20 bytes of serial (VIRTIO_BLK_ID_BYTES). */
export const SERIAL_PREFIX = 'vmlet-';
export const SERIAL_MAX = 20;

/** Total bytes of config files (ConfigMap, Secret, projected token) written into the seed per container. */
export const WRITE_FILES_CAP = 256 * 1024;
/** Files of one config volume written into the seed at most (a ConfigMap holds few keys). */
export const WRITE_FILES_MAX_FILES = 64;

/** The 9p options every share is mounted with (the kernel's 9p client, 9P2000.L, virtio transport). */
export const NINEP_OPTIONS = 'trans=virtio,version=9p2000.L,msize=512000';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** The mount tag of the share for container_path: stable for a path, 18 bytes. */
export function shareTag(containerPath: string): string {
  return TAG_PREFIX + hex(containerPath).slice(0, 12);
}

/**
 * The virtio-blk serial of a block volume: from the volume's host path's last component (the
 * kubelet names it after the PersistentVolume), so one PVC has the same serial in every pod and
 * the guest finds it as /dev/disk/by-id/virtio-<serial>. 20 bytes.
 */
export function deviceSerial(hostPath: string): string {
  const name = hostPath.replace(/\/+$/, '').split('/').pop() ?? hostPath;
  return SERIAL_PREFIX + hex(name).slice(0, SERIAL_MAX - SERIAL_PREFIX.length);
}

/** A share to mount at boot; 9p unless virtiofs. */
export interface GuestMount {
  tag: string;
  path: string;
  readonly: boolean;
  virtiofs?: boolean;
}

/** A file cloud-init writes at boot (content already read on the host). */
export interface GuestFile {
  path: string;
  content: Buffer;
  /** Permission bits, e.g. 0o644. */
  mode: number;
}

/**
 * cloud-init `mounts` entries: [fs_spec, fs_file, fs_vfstype, fs_mntops, fs_freq, fs_passno].
 * nofail: a guest without 9p or virtiofs drivers still boots (and keeps what write_files gave it).
 */
export function cloudInitMounts(mounts: readonly GuestMount[]): string[][] {
  return mounts.map((m) => [m.tag, m.path, m.virtiofs ? 'virtiofs' : '9p', `${m.virtiofs ? '' : `${NINEP_OPTIONS},`}${m.readonly ? 'ro' : 'rw'},nofail`, '0', '0']);
}

/** cloud-init `write_files` entries, base64 (Secrets may hold any bytes). */
export function cloudInitWriteFiles(files: readonly GuestFile[]): Array<Record<string, string>> {
  return files.map((f) => ({
    path: f.path,
    encoding: 'b64',
    content: f.content.toString('base64'),
    owner: 'root:root',
    permissions: '0' + (f.mode & 0o7777).toString(8).padStart(3, '0'),
  }));
}
