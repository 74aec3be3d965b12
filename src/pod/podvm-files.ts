// Where a pod VM's files go, and their removal: for a pod's own VM (in the sandbox's dir), a
// warm-pool VM (in its own dir), and the start-up sweep of a VM no record names.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { releasePodShare } from '../guest/shared-mounts.js';
import { agentSocketPath, type QemuSocket } from '../vm/guest-agent.js';

/** Where a pod VM's files go in `dir` (the sandbox's, or a pool VM's own): scratch disk, share, console log, agent socket. */
export interface PodVmFiles {
  scratch: string;
  shared: string;
  consoleLog: string;
  socket: QemuSocket;
}

export function podVmFiles(dir: string, id: string): PodVmFiles {
  return { scratch: join(dir, 'scratch.img'), shared: join(dir, 'shared'), consoleLog: join(dir, 'console.log'), socket: agentSocketPath(dir, id) };
}

/** The scratch disk and the share (its binds unmounted first) of a VM that is gone, and its agent socket's dir when that is under /run/vmlet. */
export async function removePodVmDisks(files: Pick<PodVmFiles, 'scratch' | 'shared'> & { socket?: QemuSocket }): Promise<void> {
  await rm(files.scratch, { force: true });
  if (files.socket?.fallback) await rm(files.socket.dir, { recursive: true, force: true });
  await releasePodShare(files.shared);
}
