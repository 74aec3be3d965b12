// RemoveContainer: stop the VM if it runs, undefine the domain, delete its overlay, NVRAM and
// state. The CRI log file stays: the kubelet owns pod log dirs. Unknown: success.
import { rm } from 'node:fs/promises';
import { removeQemuLog } from '../vm/stop-reason.js';
import { stripNvram } from '../vm/domain-xml.js';
import type { PodManager } from './manager.js';
import { stopContainer } from './container-stop.js';

export async function removeContainer(m: PodManager, id: string): Promise<void> {
  const c = m.container(id);
  if (!c) return;
  await stopContainer(m, c.id, 0);
  await m.lock.run(c.id, async () => {
    if (!m.containers.has(c.id)) return;
    await undefineDomain(m, c.domainName);
    for (const f of c.files) await rm(f, { force: true, recursive: true });
    await removeQemuLog(c.domainName);
    await m.store.removeContainer(c);
    m.containers.delete(c.id);
    m.log.info({ containerId: c.id, podSandboxId: c.sandboxId, domain: c.domainName }, 'container removed');
  });
}

/** Undefines a domain, gone or not; one with NVRAM is first redefined without it (see stripNvram). */
export async function undefineDomain(m: PodManager, name: string): Promise<void> {
  const lv = m.deps.libvirt;
  let xml: string;
  try {
    xml = await lv.domainXML(name);
  } catch (err) {
    if ((err as { kind?: string }).kind === 'not-found') return;
    throw err;
  }
  const withoutNvram = stripNvram(xml);
  if (withoutNvram !== xml) await lv.defineDomain(withoutNvram);
  await lv.undefineDomain(name).catch((err: Error & { kind?: string }) => {
    if (err.kind !== 'not-found') throw err;
  });
}
