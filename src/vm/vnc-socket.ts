// Where a VM-image pod's VNC display listens (annotation vmlet.io/vnc; docs/vnc.md): a unix
// socket QEMU creates, in a directory of QEMU's own (qemu-user.ts socketDirFor) inside the pod's
// state dir, so only root and QEMU's user on the node reach the display. `vmlet vnc` finds it
// by the same rule, from the state dir and the pod id.
import { existingSocket, legacySocketPath, qemuSocketPath, type QemuSocket } from './guest-agent.js';
import { searchableDir, socketDirFor, type QemuIdentity } from './qemu-user.js';

/** Where VNC sockets go when the pod's state dir is too deep for a socket path. */
export const VNC_SOCKET_FALLBACK_DIR = '/run/vmlet/vnc';

/**
 * `<pod dir>/qemu/vnc.sock` when it fits in a unix socket path (it does under the default state
 * dir: /var/lib/vmlet/pods/<64 hex>/qemu/vnc.sock is 98 bytes), else
 * `/run/vmlet/vnc/<pod id>/vnc.sock`. One per pod: a VM-image pod has one VM. Pure, so
 * `vmlet vnc` finds the socket CreateContainer chose.
 */
export function vncSocketPath(podDir: string, sandboxId: string): QemuSocket {
  return qemuSocketPath(podDir, 'vnc.sock', VNC_SOCKET_FALLBACK_DIR, sandboxId);
}

/** The socket `vmlet vnc` dials: vncSocketPath's, or where a VM started while QEMU ran as root put it. */
export function existingVncSocket(podDir: string, sandboxId: string): string {
  return existingSocket(vncSocketPath(podDir, sandboxId).path, legacySocketPath(podDir, 'vnc.sock', VNC_SOCKET_FALLBACK_DIR, sandboxId));
}

/** QEMU creates the socket at start and needs its dir, owned by QEMU's user. */
export async function prepareVncSocketDir(socket: QemuSocket, owner: QemuIdentity): Promise<void> {
  if (socket.fallback) await searchableDir(VNC_SOCKET_FALLBACK_DIR);
  await socketDirFor(socket.dir, owner);
}
