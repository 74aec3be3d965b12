// The sandboxed pod VM's size: the pod's containers' limits (the kubelet's sandbox resources) plus
// room for the guest itself; annotations exact; the node default otherwise.
import { describe, expect, it } from 'vitest';
import { NODE_DEFAULTS, parseVmSettings } from '../../src/vm/annotations.js';
import { podHostname, POD_VM_BASE_MIB, sizePodVm } from '../../src/pod/podvm-boot.js';
import { podDemand } from '../../src/pod/podvm-grow.js';
import type { LinuxContainerResources } from '../../src/pod/configs.js';

const res = (memory: number, quota = 0): LinuxContainerResources =>
  ({ cpu_period: '100000', cpu_quota: String(quota), cpu_shares: '0', memory_limit_in_bytes: String(memory), oom_score_adj: '0', cpuset_cpus: '', cpuset_mems: '', hugepage_limits: [], unified: {}, memory_swap_limit_in_bytes: '0' });
const size = (annotations: Record<string, string>, sandbox: LinuxContainerResources | null, hostCpus = 4) =>
  sizePodVm(parseVmSettings({ sandboxAnnotations: annotations, containerAnnotations: {}, imageLabels: {}, containerResources: null, sandboxResources: sandbox, defaults: NODE_DEFAULTS }), hostCpus);

describe('pod VM size', () => {
  it('gives the containers\' limits plus room for the guest, and vCPUs from the CPU limit', () => {
    const s = size({}, res(300 * 2 ** 20, 250_000));
    expect(s.memoryMiB).toBe(300 + POD_VM_BASE_MIB);
    expect(s.maxMemoryMiB).toBe(300 + POD_VM_BASE_MIB);
    expect(s.vcpus).toBe(3);
    expect(s.sources.memory).toMatch(/^sandbox resources \+ \d+ MiB for the guest$/);
  });
  it("leaves room to hot-add vCPUs up to the host's CPUs, unless vmlet.io/max-vcpus says otherwise", () => {
    expect(size({}, res(0, 100_000), 8)).toMatchObject({ vcpus: 1, maxVcpus: 8 });
    expect(size({}, res(0, 300_000), 2)).toMatchObject({ vcpus: 3, maxVcpus: 3 }); // never below vcpus
    expect(size({ 'vmlet.io/max-vcpus': '2' }, res(0, 100_000), 8)).toMatchObject({ vcpus: 1, maxVcpus: 2 });
  });
  it('takes an annotation as it is, and the node default without limits', () => {
    expect(size({ 'vmlet.io/memory': '1Gi' }, res(300 * 2 ** 20)).memoryMiB).toBe(1024);
    expect(size({}, null).memoryMiB).toBe(NODE_DEFAULTS.memoryMiB);
  });
});

describe("what a pod's containers ask of its VM", () => {
  it('sums memory limits and CPU limits (as fractions of a CPU, each with its own period)', () => {
    const half = { ...res(64 * 2 ** 20, 25_000), cpu_period: '50000' };
    expect(podDemand([res(100 * 2 ** 20, 150_000), half, null, undefined, res(0)])).toEqual({ memoryBytes: 164 * 2 ** 20, cpus: 2 });
    expect(podDemand([])).toEqual({ memoryBytes: 0, cpus: 0 });
  });
});

describe('pod VM hostname', () => {
  it("is the pod's hostname, else its name cut to 63 bytes without a trailing '-' or '.', as the kubelet cuts it", () => {
    expect(podHostname('web-0', 'whatever')).toBe('web-0');
    expect(podHostname('', 'short')).toBe('short');
    const long = 'create-Privileged-PodSandbox-for-container-' + 'a'.repeat(19) + '-' + 'b'.repeat(20);
    expect(podHostname('', long)).toBe(long.slice(0, 62));
    expect(podHostname('', long).length).toBeLessThanOrEqual(63);
  });
});
