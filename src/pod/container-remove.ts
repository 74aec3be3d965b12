// RemoveContainer: stop the VM if it runs, undefine the domain, delete its overlay, NVRAM and
// state. The CRI log file stays: the kubelet owns pod log dirs. Unknown: success.
import { rm } from 'node:fs/promises';
import type { PodManager } from './manager.js';
import { stopContainer } from './container-stop.js';
import { removeSandboxed } from './sandboxed-lifecycle.js';
import { detachBlockVolumes } from './sandboxed-devices.js';
import { devicesOf } from './volumes.js';
import { deviceSerial } from '../vm/volumes.js';

export async function removeContainer(m: PodManager, id: string): Promise<void> {
  const c = m.container(id);
  if (!c) return;
  await stopContainer(m, c.id, 0);
  await m.lock.run(c.id, async () => {
    if (!m.containers.has(c.id)) return;
    if (c.kind === 'sandboxed') {
      await removeSandboxed(m, c);
      const s = m.sandboxes.get(c.sandboxId);
      // After the agent removed the container (its device nodes are gone with its /dev).
      if (s) await detachBlockVolumes(m, s, c.id, devicesOf(c.config).map((d) => deviceSerial(d.host_path)));
      return;
    }
    await m.exitWatches.settled([c.domainName]); // libvirt done with it: no undefine or file removal under its teardown
    await m.deps.vm.remove(c.domainName);
    for (const f of c.files) await rm(f, { force: true, recursive: true });
    await m.store.removeContainer(c);
    m.containers.delete(c.id);
    m.log.info({ containerId: c.id, podSandboxId: c.sandboxId, domain: c.domainName }, 'container removed');
  });
}
