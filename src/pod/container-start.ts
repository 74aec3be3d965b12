// StartContainer: boot the VM. RUNNING once QEMU runs, not when the guest is ready.
import { failedPrecondition, notFound } from '../errors.js';
import type { PodManager } from './manager.js';
import { nowNs } from './records.js';
import { attachPodTap } from '../net/index.js';
import { startSandboxed } from './sandboxed-lifecycle.js';
import { removeCreated } from '../vm/pod-cgroup.js';
import { startInPodCgroup } from './qemu-cgroup.js';
import { timedBoot } from '../metrics/vmlet.js';

export async function startContainer(m: PodManager, id: string): Promise<void> {
  const t0 = performance.now();
  const c = m.mustContainer(id);
  await m.lock.run(c.id, async () => {
    // A stopped pod has no network (its address may be another pod's now), and one being stopped
    // or removed sets that mark before it stops or removes this container under its lock.
    const s = m.sandboxes.get(c.sandboxId);
    if (!s || !m.containers.has(c.id)) throw notFound(`container ${c.id} not found (removed with pod sandbox ${c.sandboxId})`);
    m.requireReady(s, `container ${c.id} cannot start`);
    if (c.kind === 'sandboxed') return startSandboxed(m, c);
    if (c.state !== 'created') throw failedPrecondition(`container ${c.id} is ${c.state}; only a created container can be started`);
    const t1 = performance.now();
    const cgroup = await startInPodCgroup(m, s.config.linux?.cgroup_parent, c.domainName, () => timedBoot('vm', m.deps.vm.start(c.domainName)));
    const t2 = performance.now();
    const net = m.networks.get(c.sandboxId);
    try {
      // libvirt made the tap in the host netns; the VM's network is in the pod's.
      if (net) await attachPodTap(net, { fresh: true });
    } catch (err) {
      await m.deps.vm.destroy(c.domainName).catch(() => undefined);
      if (cgroup) removeCreated(cgroup.made);
      throw err;
    }
    const t3 = performance.now();
    c.state = 'running';
    c.startedAt = nowNs();
    await m.store.saveContainer(c);
    m.startTailer(c);
    // Where the call's time goes (bench/pod-start.ts reads it): the lock, the domain start, the tap, the record.
    const ms = (a: number, b: number) => Math.round(b - a);
    m.log.info({ containerId: c.id, podSandboxId: c.sandboxId, domain: c.domainName, ...(cgroup ? { cgroup: cgroup.dirs[0] } : {}), ms: ms(t0, performance.now()), checkMs: ms(t0, t1), startMs: ms(t1, t2), tapMs: ms(t2, t3), saveMs: ms(t3, performance.now()) }, 'container started');
  });
}
