// Where a VM-image pod's VNC display listens (annotation vmlet.io/vnc; docs/vnc.md): a unix
// socket QEMU creates, in the pod's state dir, which is root's alone (0700), so only root on the
// node reaches the display. `vmlet vnc` finds it by the same rule, from the state dir and the pod id.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UNIX_PATH_MAX } from './guest-agent.js';

/** Where VNC sockets go when the pod's state dir is too deep for a socket path. */
export const VNC_SOCKET_FALLBACK_DIR = '/run/vmlet/vnc';

/**
 * `<pod dir>/vnc.sock` when it fits in a unix socket path (it does under the default state dir:
 * /var/lib/vmlet/pods/<64 hex>/vnc.sock is 93 bytes), else `/run/vmlet/vnc/<pod id>.sock`. One
 * per pod: a VM-image pod has one VM. Pure, so `vmlet vnc` finds the socket CreateContainer chose.
 */
export function vncSocketPath(podDir: string, sandboxId: string): { path: string; fallback: boolean } {
  const inDir = join(podDir, 'vnc.sock');
  if (Buffer.byteLength(inDir) <= UNIX_PATH_MAX) return { path: inDir, fallback: false };
  return { path: join(VNC_SOCKET_FALLBACK_DIR, `${sandboxId}.sock`), fallback: true };
}

/** QEMU creates the socket at start and needs its dir; the fallback dir is root's, like the state dir. */
export async function prepareVncSocketDir(socket: { path: string; fallback: boolean }): Promise<void> {
  if (socket.fallback) await mkdir(VNC_SOCKET_FALLBACK_DIR, { recursive: true, mode: 0o700 });
}
