// StartContainer: boot the VM. RUNNING once QEMU runs, not when the guest is ready.
import { failedPrecondition, notFound } from '../errors.js';
import type { PodManager } from './manager.js';
import { nowNs } from './records.js';
import { attachPodTap } from '../net/index.js';
import { startSandboxed } from './sandboxed-lifecycle.js';
import { removeCreated } from '../vm/pod-cgroup.js';
import { startInPodCgroup } from './qemu-cgroup.js';
import { timedBoot } from '../metrics/vmlet.js';
import { phases } from '../util/phases.js';

export async function startContainer(m: PodManager, id: string): Promise<void> {
  const { lap, fields } = phases();
  const c = m.mustContainer(id);
  await m.lock.run(c.id, async () => {
    // A stopped pod has no network (its address may be another pod's now), and one being stopped
    // or removed sets that mark before it stops or removes this container under its lock.
    const s = m.sandboxes.get(c.sandboxId);
    if (!s || !m.containers.has(c.id)) throw notFound(`container ${c.id} not found (removed with pod sandbox ${c.sandboxId})`);
    m.requireReady(s, `container ${c.id} cannot start`);
    if (c.kind === 'sandboxed') return startSandboxed(m, c);
    if (c.state !== 'created') throw failedPrecondition(`container ${c.id} is ${c.state}; only a created container can be started`);
    // The pod's earlier VM may be dead but still being torn down by libvirt, which deletes its tap
    // by name: the name this VM's tap gets (exit-watch.ts).
    await m.exitWatches.settled(m.containersOf(c.sandboxId).map((x) => x.domainName));
    lap('checkMs');
    const net = m.networks.get(c.sandboxId);
    // With a network the VM starts paused: its tap is wired into the pod netns (and QEMU placed in
    // the pod cgroup) before the guest's first instruction, so no DHCP request of an early boot
    // (a KVM guest's, in well under a second) goes out on a tap that leads nowhere yet.
    const cgroup = await startInPodCgroup(m, s.config.linux?.cgroup_parent, c.domainName, () => timedBoot('vm', m.deps.vm.start(c.domainName, { paused: !!net })));
    lap('startMs');
    try {
      // Before the guest runs: its end is heard from QEMU at once, whatever it does from its first instruction.
      await m.watchVm(c);
      lap('watchMs');
      if (net) {
        // libvirt made the tap in the host netns; the VM's network is in the pod's.
        await attachPodTap(net, { fresh: true });
        lap('tapMs');
        await m.deps.vm.resume(c.domainName);
        lap('resumeMs');
      }
    } catch (err) {
      m.exitWatches.unwatch(c.id);
      await m.deps.vm.destroy(c.domainName).catch(() => undefined);
      if (cgroup) removeCreated(cgroup.made);
      throw err;
    }
    c.state = 'running';
    c.startedAt = nowNs();
    await m.store.saveContainer(c);
    lap('saveMs');
    m.startTailer(c);
    m.log.info({ containerId: c.id, podSandboxId: c.sandboxId, domain: c.domainName, ...(cgroup ? { cgroup: cgroup.dirs[0] } : {}), ...fields() }, 'container started');
  });
}
