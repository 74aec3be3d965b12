// Where a pod VM's files go, and their removal: for a pod's own VM (in the sandbox's dir), a
// warm-pool VM (in its own dir), and the start-up sweep of a VM no record names.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { releasePodShare } from '../guest/shared-mounts.js';
import { agentSocketPath } from '../vm/guest-agent.js';

/** Where a pod VM's files go in `dir` (the sandbox's, or a pool VM's own): scratch disk, share, console log, agent socket. */
export interface PodVmFiles {
  scratch: string;
  shared: string;
  consoleLog: string;
  socket: { path: string; fallback: boolean };
}

export function podVmFiles(dir: string, id: string): PodVmFiles {
  return { scratch: join(dir, 'scratch.img'), shared: join(dir, 'shared'), consoleLog: join(dir, 'console.log'), socket: agentSocketPath(dir, id) };
}

/** The scratch disk and the share (its binds unmounted first) of a VM that is gone. */
export async function removePodVmDisks(files: Pick<PodVmFiles, 'scratch' | 'shared'>): Promise<void> {
  await rm(files.scratch, { force: true });
  await releasePodShare(files.shared);
}
