// StopPodSandbox: stop its VM at once (the kubelet has already given containers their grace
// period), tear down its network (CNI DEL, DHCP server), keep its state and netns.
// Unknown or already stopped: success.
import { teardownPodNetwork } from '../net/index.js';
import type { PodManager } from './manager.js';
import { stopContainer } from './container-stop.js';
import { stopPodVm } from './podvm-boot.js';

export async function stopPodSandbox(m: PodManager, id: string): Promise<void> {
  const s = m.sandbox(id);
  if (!s) return;
  // Everything under the pod's lock, which CreateContainer holds: its containers are listed only
  // once no create is under way, and the mark makes a StartContainer racing the stop refuse.
  // Container locks are taken inside the pod's (pod, then container: the one order used).
  await m.closingPod(s, 'stopping', async () => {
    for (const c of m.containersOf(s.id)) await stopContainer(m, c.id, 0);
    await m.ownVmStop(s, () => stopPodVm(m, s));
    const net = m.networks.get(s.id);
    if (net) await teardownPodNetwork(net, { log: m.log });
    if (s.state !== 'notready') {
      s.state = 'notready';
      await m.store.saveSandbox(s);
      m.log.info({ podSandboxId: s.id }, 'pod sandbox stopped');
    }
  });
}
