// UpdateContainerResources on a VM (in-place pod resize, the CPU manager's pinning):
//  - memory limit → the balloon's target, up to the RAM the VM was defined with (vmlet.io/max-memory);
//  - CPU limit → the whole domain's CFS quota (cputune global_quota), and more vCPUs when the limit
//    needs them and vmlet.io/max-vcpus left room (hotplug). vCPUs are never unplugged: the quota
//    already holds a smaller limit, and unplug needs the guest's cooperation;
//  - cpu_shares → <shares>; cpuset_cpus → every vCPU and the emulator pinned (empty: unpinned).
// A container of a sandboxed pod is a cgroup in the pod's VM: sandboxed-update.ts.
// Everything is checked before anything changes, so a refused update leaves the VM as it was.
// A running VM changes live and in its definition; a created one only in its definition.
import { failedPrecondition, invalidArgument, VmletError } from '../errors.js';
import type { LinuxContainerResources } from './configs.js';
import { annotationOf, ANNOTATIONS, NODE_DEFAULTS, parseVmSettings, resizeSettings, type MachineSettings } from '../vm/annotations.js';
import { formatCpuList, hostShares, hostTopology, parseCpuTune } from '../vm/cputune.js';
import type { PodManager } from './manager.js';
import type { ContainerRecord, SandboxRecord } from './records.js';
import { updateSandboxedResources } from './sandboxed-update.js';

const KiB_PER_MiB = 1024;

export async function updateContainerResources(m: PodManager, id: string, linux: LinuxContainerResources | null): Promise<void> {
  const c = m.mustContainer(id);
  if (c.kind === 'sandboxed') return updateSandboxedResources(m, c, linux);
  const s = m.mustSandbox(c.sandboxId);
  if (!linux) throw invalidArgument('linux is required: vmlet runs Linux VMs (windows resources do not apply)');
  await m.lock.run(c.id, async () => {
    if (c.state !== 'running' && c.state !== 'created') {
      throw failedPrecondition(`container ${c.id} is ${c.state}: resources can be updated on a created or running container only`);
    }
    const live = c.state === 'running';
    const host = hostTopology();
    // Validation first (InvalidArgument naming the field): the settings CreateContainer parsed,
    // with the new resources under the same rules. The maxima are the domain's, read from libvirt
    // below: checked there with a resize's message.
    const settings = resizeSettings(storedSettings(c, s), {
      containerResources: linux,
      sandboxResources: s.config.linux?.resources ?? null,
      defaults: NODE_DEFAULTS,
    });
    const tune = parseCpuTune(linux, 'linux', host);
    const before = parseCpuTune(c.resources ?? c.config.linux?.resources, 'linux', host);

    const vm = m.deps.vm;
    const [info, vcpus] = await Promise.all([vm.sample(c.domainName), vm.vcpuCounts(c.domainName, live)]);
    const wantKiB = settings.memoryMiB * KiB_PER_MiB;
    if (wantKiB > info.maxMemKiB) {
      throw failedPrecondition(
        `linux.memory_limit_in_bytes: the VM would need ${settings.memoryMiB} MiB (from ${settings.sources.memory}), more than the ${info.maxMemKiB / KiB_PER_MiB} MiB it was created with: ` +
          `a running VM's memory can grow only up to its pod's ${ANNOTATIONS.maxMemory} annotation; recreate the pod with a larger one`,
      );
    }
    // Hugepage-backed VMs have no headroom (max-memory is refused with hugepages): their size is fixed.
    if (settings.hugepages && wantKiB !== info.maxMemKiB) {
      throw failedPrecondition(`linux.memory_limit_in_bytes: the VM's memory is backed by hugepages (${annotationOf(settings, 'hugepages')}), which cannot be ballooned: it stays at ${info.maxMemKiB / KiB_PER_MiB} MiB; recreate the pod to change it`);
    }
    if (settings.vcpus > vcpus.max) {
      throw failedPrecondition(
        `linux.cpu_quota: the CPU limit needs ${settings.vcpus} vCPUs (from ${settings.sources.vcpus}), more than the ${vcpus.max} the VM was created with: ` +
          `vCPUs can be added to a running VM only up to its pod's ${ANNOTATIONS.maxVcpus} annotation; recreate the pod with a larger one`,
      );
    }
    // A node list naming every host node constrains nothing (the kubelet sends "0" on one-node hosts).
    const nodes = (x: number[] | undefined) => (x && x.length < host.numaNodes ? x : undefined);
    if (!sameList(nodes(tune.memNodes), nodes(before.memNodes))) {
      throw failedPrecondition(
        `linux.cpuset_mems: moving a VM's memory to other NUMA nodes (${formatCpuList(before.memNodes ?? [])} → ${formatCpuList(tune.memNodes ?? [])}) is not supported on an existing VM; recreate the pod`,
      );
    }

    const steps: string[] = [];
    const step = async (what: string, fn: () => Promise<void>) => {
      try {
        await fn();
        steps.push(what);
      } catch (err) {
        const done = steps.length ? ` (already applied: ${steps.join(', ')})` : '';
        throw new VmletError('internal', `updating ${c.domainName}: ${what} failed: ${(err as Error).message}${done}`, { cause: err });
      }
    };
    // Always set the target: libvirt's idea of the balloon's size (getInfo) follows QEMU's
    // BALLOON_CHANGE events, which QEMU sends at most once a second, so right after a resize it
    // can still show the target a new update asks for, and skipping the call would lose it
    // (measured: 1 run in 5 of update-resources.test.ts). Setting the same target is a no-op.
    if (!settings.hugepages) await step(`memory ${settings.memoryMiB} MiB`, () => vm.setMemory(c.domainName, wantKiB, live));
    const online = Math.max(vcpus.current, settings.vcpus);
    if (online > vcpus.current) await step(`${online} vCPUs`, () => vm.setVcpus(c.domainName, online, live));
    await step('CPU shares and quota', () =>
      vm.setScheduler(
        c.domainName,
        {
          ...(tune.shares !== undefined ? { shares: hostShares(tune.shares) } : {}),
          ...(tune.periodUs !== undefined ? { periodUs: tune.periodUs } : {}),
          quotaUs: tune.quotaUs ?? -1, // -1: no limit
        },
        live,
      ),
    );
    if (tune.cpuset || before.cpuset) {
      const cpus = tune.cpuset ?? Array.from({ length: host.cpus }, (_, i) => i);
      await step(`pinning to CPUs ${formatCpuList(cpus)}`, () => vm.pinCpus(c.domainName, online, cpus, live));
    }

    c.resources = linux;
    await m.store.saveContainer(c);
    m.log.info(
      {
        containerId: c.id,
        podSandboxId: c.sandboxId,
        live,
        vcpus: online,
        memoryMiB: settings.memoryMiB,
        cpuQuotaUs: tune.quotaUs ?? -1,
        cpuShares: tune.shares,
        cpuset: tune.cpuset ? formatCpuList(tune.cpuset) : undefined,
      },
      'container resources updated',
    );
  });
}

/** What CreateContainer parsed; a record written before vmlet kept it is parsed again from its configs, as then. */
function storedSettings(c: ContainerRecord, s: SandboxRecord): MachineSettings {
  return (
    c.settings ??
    parseVmSettings({
      sandboxAnnotations: s.config.annotations ?? {},
      containerAnnotations: c.config.annotations ?? {},
      containerResources: c.config.linux?.resources ?? null,
      sandboxResources: s.config.linux?.resources ?? null,
      defaults: NODE_DEFAULTS,
    })
  );
}

function sameList(a: number[] | undefined, b: number[] | undefined): boolean {
  return formatCpuList(a ?? []) === formatCpuList(b ?? []);
}
