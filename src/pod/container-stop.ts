// StopContainer: ACPI shutdown, up to `timeout` seconds for the guest to power off, then destroy.
// timeout 0 destroys at once. Unknown or not running: success (CRI: idempotent).
import { DomainState } from '../vm/libvirt.js';
import type { PodManager } from './manager.js';

const POLL_MS = 100;

export async function stopContainer(m: PodManager, id: string, timeoutSec: number): Promise<void> {
  const c = m.container(id);
  if (!c) return;
  await m.lock.run(c.id, async () => {
    if (c.state !== 'running') return;
    const lv = m.deps.libvirt;
    const isOff = async () => {
      try {
        const s = (await lv.domainInfo(c.domainName)).state;
        return s === DomainState.SHUTOFF || s === DomainState.CRASHED;
      } catch (err) {
        if ((err as { kind?: string }).kind === 'not-found') return true;
        throw err;
      }
    };
    if (timeoutSec > 0 && !(await isOff())) {
      c.stopping = 'shutdown';
      await m.store.saveContainer(c);
      await lv.shutdownDomain(c.domainName).catch((err: Error) => m.log.warn({ containerId: c.id, err: err.message }, 'ACPI shutdown failed'));
      const deadline = Date.now() + timeoutSec * 1000;
      while (Date.now() < deadline && !(await isOff())) await new Promise((r) => setTimeout(r, POLL_MS));
    }
    if (!(await isOff())) {
      c.stopping = 'destroy';
      await m.store.saveContainer(c);
      await lv.destroyDomain(c.domainName).catch((err: Error & { kind?: string }) => {
        if (err.kind !== 'not-found' && !/not running/i.test(err.message)) throw err;
      });
    }
    await m.markExited(c, c.stopping);
  });
}
