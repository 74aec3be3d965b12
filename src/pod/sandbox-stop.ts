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
  for (const c of m.containersOf(s.id)) await stopContainer(m, c.id, 0);
  await m.lock.run(s.id, async () => {
    m.stoppingPods.add(s.id);
    try {
      await stopPodVm(m, s);
    } finally {
      m.stoppingPods.delete(s.id);
    }
    const net = m.networks.get(s.id);
    if (net) await teardownPodNetwork(net, { log: m.log });
    if (s.state !== 'notready') {
      s.state = 'notready';
      await m.store.saveSandbox(s);
      m.log.info({ podSandboxId: s.id }, 'pod sandbox stopped');
    }
  });
}
