// RemovePodSandbox: its containers (stopped first), network namespace and state dir.
// Unknown or already removed: success.
import { deleteNetns } from '../net/netns.js';
import { teardownPodNetwork } from '../net/index.js';
import type { PodManager } from './manager.js';
import { removeContainer } from './container-remove.js';
import { removePodVm } from './podvm-boot.js';

export async function removePodSandbox(m: PodManager, id: string): Promise<void> {
  const s = m.sandbox(id);
  if (!s) return;
  // Under the pod's lock, as StopPodSandbox (see there): a container CreateContainer adds is
  // listed and removed here, never left as a domain whose state dir is gone.
  await m.lock.run(s.id, async () => {
    if (m.sandboxes.get(s.id) !== s) return; // removed while this call waited
    m.closing.set(s.id, 'removing');
    try {
      for (const c of m.containersOf(s.id)) await removeContainer(m, c.id);
      m.stoppingPods.add(s.id);
      try {
        await removePodVm(m, s);
      } finally {
        m.stoppingPods.delete(s.id);
      }
      const net = m.networks.get(s.id);
      if (net && s.state === 'ready') await teardownPodNetwork(net, { log: m.log }); // removed without a stop
      if (s.netns) await deleteNetns(s.netns.name);
      await m.store.removeSandbox(s.id);
      m.networks.delete(s.id);
      m.sandboxes.delete(s.id);
      m.log.info({ podSandboxId: s.id }, 'pod sandbox removed');
    } finally {
      m.closing.delete(s.id);
    }
  });
}
