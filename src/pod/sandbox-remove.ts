// RemovePodSandbox: its containers (stopped first), network namespace, cgroup leaves, state dir
// and VNC socket dir.
// Unknown or already removed: success.
import { deleteNetns } from '../net/netns.js';
import { teardownPodNetwork } from '../net/index.js';
import type { PodManager } from './manager.js';
import { removeContainer } from './container-remove.js';
import { removePodVm } from './podvm-boot.js';
import { removePodLeaves } from '../vm/pod-cgroup.js';
import { vncSocketPath } from '../vm/vnc-socket.js';
import { rm } from 'node:fs/promises';

export async function removePodSandbox(m: PodManager, id: string): Promise<void> {
  const s = m.sandbox(id);
  if (!s) return;
  // Under the pod's lock, as StopPodSandbox (see there): a container CreateContainer adds is
  // listed and removed here, never left as a domain whose state dir is gone.
  await m.closingPod(s, 'removing', async () => {
    for (const c of m.containersOf(s.id)) await removeContainer(m, c.id);
    await m.ownVmStop(s, () => removePodVm(m, s));
    const net = m.networks.get(s.id);
    if (net && s.state === 'ready') await teardownPodNetwork(net, { log: m.log }); // removed without a stop
    if (s.netns) await deleteNetns(s.netns.name);
    try {
      removePodLeaves(s.config.linux?.cgroup_parent, m.deps.config.cgroupDriver);
    } catch (err) {
      m.log.warn({ podSandboxId: s.id, err: (err as Error).message }, 'cannot remove the pod cgroup\'s leaves');
    }
    await m.store.removeSandbox(s.id);
    const vnc = vncSocketPath(m.store.sandboxDir(s.id), s.id); // in the pod dir unless that is too deep
    if (vnc.fallback) await rm(vnc.dir, { recursive: true, force: true });
    m.networks.delete(s.id);
    m.sandboxes.delete(s.id);
    m.log.info({ podSandboxId: s.id }, 'pod sandbox removed');
  });
}
