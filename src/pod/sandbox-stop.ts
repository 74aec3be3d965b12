// StopPodSandbox: stop its VM at once (the kubelet has already given containers their grace
// period), tear down its network, keep its state. Unknown or already stopped: success.
import { deleteNetns } from '../net/netns.js';
import type { PodManager } from './manager.js';
import { stopContainer } from './container-stop.js';

export async function stopPodSandbox(m: PodManager, id: string): Promise<void> {
  const s = m.sandbox(id);
  if (!s) return;
  for (const c of m.containersOf(s.id)) await stopContainer(m, c.id, 0);
  await m.lock.run(s.id, async () => {
    if (s.netns) await deleteNetns(s.netns.name);
    if (s.state !== 'notready') {
      s.state = 'notready';
      await m.store.saveSandbox(s);
      m.log.info({ podSandboxId: s.id }, 'pod sandbox stopped');
    }
  });
}
