// Stats, writable layer: the files vmlet made for the container (qcow2 overlay, NVRAM,
// cloud-init seed) by allocated blocks, inodes = how many of them exist; the filesystem is the
// mount holding the pods' state dir (the same ImageFsInfo reports as container_filesystems).
import { stat } from 'node:fs/promises';
import { nowMs } from './records.js';

export interface FilesystemStats {
  /** When the files were measured: ms since the epoch. */
  atMs: number;
  /** The mount point of the filesystem holding them. */
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
}

/** Allocated bytes and count of the container's own files (overlay, NVRAM, seed). */
export async function filesUsage(files: readonly string[]): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 0;
  for (const f of files) {
    try {
      const st = await stat(f);
      bytes += st.blocks * 512;
      inodes++;
    } catch {
      // not made (yet) or removed
    }
  }
  return { bytes, inodes };
}

/** The container's writable layer: its files, on the filesystem mounted at `mountpoint`. */
export async function writableLayer(files: readonly string[], mountpoint: string): Promise<FilesystemStats> {
  const u = await filesUsage(files);
  return { atMs: nowMs(), mountpoint, usedBytes: u.bytes, inodesUsed: u.inodes };
}
