// StopContainer: ACPI shutdown, up to `timeout` seconds for the guest to power off, then destroy.
// timeout 0 destroys at once. Unknown or not running: success (CRI: idempotent).
import type { PodManager } from './manager.js';
import { stopSandboxed } from './sandboxed-lifecycle.js';

const POLL_MS = 100;

export async function stopContainer(m: PodManager, id: string, timeoutSec: number): Promise<void> {
  const c = m.container(id);
  if (!c) return;
  await m.lock.run(c.id, async () => {
    if (c.state !== 'running') return;
    if (c.kind === 'sandboxed') return stopSandboxed(m, c, timeoutSec);
    const vm = m.deps.vm;
    const isOff = async () => {
      const s = await vm.state(c.domainName);
      return s === 'shutoff' || s === 'crashed' || s === 'absent';
    };
    if (timeoutSec > 0 && !(await isOff())) {
      c.stopping = 'shutdown';
      await m.store.saveContainer(c);
      await vm.shutdown(c.domainName).catch((err: Error) => m.log.warn({ containerId: c.id, err: err.message }, 'ACPI shutdown failed'));
      const deadline = Date.now() + timeoutSec * 1000;
      while (Date.now() < deadline && !(await isOff())) await new Promise((r) => setTimeout(r, POLL_MS));
    }
    if (!(await isOff())) {
      c.stopping = 'destroy';
      await m.store.saveContainer(c);
      await vm.destroy(c.domainName); // absent or not running: no error
    }
    await m.markExited(c, c.stopping);
  });
}
