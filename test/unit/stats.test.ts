import { describe, expect, it } from 'vitest';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CpuRateTracker } from '../../src/pod/stats-cpu.js';
import { parseProcStatFaults, parseProcStatus } from '../../src/pod/stats-memory.js';
import { filesUsage } from '../../src/pod/stats-layer.js';
import { guestView, parseIpLinkStats, parseNetDev } from '../../src/pod/stats-network.js';
import { containerStats as podContainerStats } from '../../src/pod/container-stats.js';
import { listContainerStats as podListContainerStats } from '../../src/pod/container-stats-list.js';
import { podSandboxStats as podPodSandboxStats } from '../../src/pod/sandbox-stats.js';
import { listPodSandboxStats as podListPodSandboxStats } from '../../src/pod/sandbox-stats-list.js';
import { containerMatches } from '../../src/pod/container-list.js';
import { recordMatches } from '../../src/pod/filter.js';
import { containerStatsFilter, nsString, sandboxStatsFilter, wireContainerStats, wirePodSandboxStats } from '../../src/cri/stats-wire.js';
import type { ContainerStatsFilter__Output } from '../../src/gen/runtime/v1/ContainerStatsFilter.js';
import type { PodSandboxStatsFilter__Output } from '../../src/gen/runtime/v1/PodSandboxStatsFilter.js';
import type { VmSample } from '../../src/vm/driver.js';
import type { PodManager } from '../../src/pod/manager.js';
import type { ContainerRecord, SandboxRecord } from '../../src/pod/records.js';
import { VmletError } from '../../src/errors.js';
import { tempDir } from '../helpers/vmlet.js';

const STATUS = `Name:\tqemu-system-x86
Umask:\t0077
State:\tS (sleeping)
Tgid:\t4110
VmPeak:\t 1349784 kB
VmSize:\t 1283220 kB
VmHWM:\t  269184 kB
VmRSS:\t  269184 kB
RssAnon:\t  183820 kB
RssFile:\t   85364 kB
RssShmem:\t       4 kB
VmSwap:\t      12 kB
Threads:\t4
`;

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0:   12345      67    0    0    0     0          0         0     8910      11    0    0    0     0       0          0
vmt-0123456789a:     684       2    1    0    0     0          0         0    1548       5    3    7    0     0       0          0
   br0:     600       2    0    0    0     0          0         0     1234       4    0    0    0     0       0          0
`;

describe('/proc parsing', () => {
  it('reads QEMU memory from /proc/<pid>/status', () => {
    expect(parseProcStatus(STATUS)).toEqual({
      rssBytes: 269184 * 1024,
      rssAnonBytes: 183820 * 1024,
      rssFileBytes: 85364 * 1024,
      rssShmemBytes: 4 * 1024,
      swapBytes: 12 * 1024,
    });
    // A zombie has no memory lines.
    expect(parseProcStatus('Name:\tqemu\nState:\tZ (zombie)\n')).toBeUndefined();
  });

  it('reads page faults from /proc/<pid>/stat, whatever the command name holds', () => {
    const stat = '4110 (qemu-system-x86) S 12809 4109 4109 0 -1 138412416 14753 0 7 0 313 64 0 0 20 0 4 0 1234 1283220 67296';
    expect(parseProcStatFaults(stat)).toEqual({ minor: 14753, major: 7 });
    expect(parseProcStatFaults('42 (a) b) c) R 1 42 42 0 -1 4194304 100 0 2 0 1 1')).toEqual({ minor: 100, major: 2 });
    expect(parseProcStatFaults('42 (x) R 1')).toBeUndefined();
  });

  it('reads interface counters from /proc/<pid>/net/dev', () => {
    const m = parseNetDev(NET_DEV);
    expect([...m.keys()]).toEqual(['lo', 'eth0', 'vmt-0123456789a', 'br0']);
    expect(m.get('vmt-0123456789a')).toEqual({ rxBytes: 684, rxPackets: 2, rxErrors: 1, rxDropped: 0, txBytes: 1548, txPackets: 5, txErrors: 3, txDropped: 7 });
  });

  it("reads a link's counters from `ip -s -j link show`", () => {
    const json = JSON.stringify([{ ifname: 'vmt-x', stats64: { rx: { bytes: 10, packets: 1, errors: 2, dropped: 3 }, tx: { bytes: 20, packets: 4, errors: 5, dropped: 6 } } }]);
    expect(parseIpLinkStats(json)).toEqual({ rxBytes: 10, rxPackets: 1, rxErrors: 2, rxDropped: 3, txBytes: 20, txPackets: 4, txErrors: 5, txDropped: 6 });
    expect(parseIpLinkStats('[]')).toBeUndefined();
    expect(parseIpLinkStats('not json')).toBeUndefined();
  });

  it("maps the tap's counters to the guest's view: what the tap sent, the guest received", () => {
    const g = guestView(parseNetDev(NET_DEV).get('vmt-0123456789a')!);
    expect(g).toMatchObject({ rxBytes: 1548, rxErrors: 3, rxDropped: 7, txBytes: 684, txErrors: 1 });
  });
});

describe('CPU rate', () => {
  it('reports nothing on the first sample, then nano cores over windows of at least 1 s', () => {
    const t = new CpuRateTracker();
    expect(t.update('c', 5e9, 1000)).toBeUndefined();
    expect(t.update('c', 5.1e9, 1500)).toBeUndefined(); // 0.5 s: too short, no rate known yet
    expect(t.update('c', 5.5e9, 2000)).toBe(500_000_000); // 0.5 s of CPU in 1 s = half a core
    expect(t.update('c', 5.6e9, 2100)).toBe(500_000_000); // short window: the last rate again
    expect(t.update('c', 7.5e9, 4000)).toBe(1_000_000_000); // 2 s of CPU in 2 s since the kept sample
  });

  it('starts again when the counter goes backwards (a new QEMU process)', () => {
    const t = new CpuRateTracker();
    t.update('c', 9e9, 0);
    expect(t.update('c', 9.5e9, 1000)).toBe(500_000_000);
    expect(t.update('c', 1e8, 2000)).toBeUndefined();
    expect(t.update('c', 2e8, 3000)).toBe(100_000_000);
  });

  it('keeps one series per key and forgets removed keys', () => {
    const t = new CpuRateTracker();
    t.update('a', 0, 0);
    t.update('b', 0, 0);
    expect(t.update('a', 2e9, 1000)).toBe(2_000_000_000);
    t.retain(new Set(['a']));
    expect(t.size).toBe(1);
    expect(t.update('b', 1e9, 2000)).toBeUndefined();
  });
});

describe('wire helpers', () => {
  it('turns ms with a fraction into int64 ns strings without float drift', () => {
    expect(nsString(1_700_000_000_123.456)).toBe('1700000000123456000');
  });

  it('counts allocated blocks and files, not apparent sizes', async () => {
    const d = tempDir();
    const sparse = join(d, 'root.qcow2');
    writeFileSync(sparse, 'x'.repeat(8192));
    truncateSync(sparse, 1 << 30); // 1 GiB apparent, 8 KiB written
    const u = await filesUsage([sparse, join(d, 'missing.fd')]);
    expect(u.inodes).toBe(1);
    expect(u.bytes).toBeGreaterThan(0);
    expect(u.bytes).toBeLessThan(1 << 20);
  });
});

// ---------------------------------------------------------------------------------- assembly

// The four RPCs as the wire sees them: pod/ measures, cri/stats-wire.ts makes the messages.
type WireFilter<F> = F | null;
const containerStats = async (m: PodManager, id: string) => wireContainerStats(await podContainerStats(m, id));
const listContainerStats = async (m: PodManager, f: WireFilter<ContainerStatsFilter__Output>) =>
  (await podListContainerStats(m, containerStatsFilter(f))).map(wireContainerStats);
const podSandboxStats = async (m: PodManager, id: string) => wirePodSandboxStats(await podPodSandboxStats(m, id));
const listPodSandboxStats = async (m: PodManager, f: WireFilter<PodSandboxStatsFilter__Output>) =>
  (await podListPodSandboxStats(m, sandboxStatsFilter(f))).map(wirePodSandboxStats);
const containerStatsMatches = (c: ContainerRecord, f: WireFilter<ContainerStatsFilter__Output>) => containerMatches(c, containerStatsFilter(f));
const sandboxStatsMatches = (s: SandboxRecord, f: WireFilter<PodSandboxStatsFilter__Output>) => recordMatches(s, sandboxStatsFilter(f));

const SB = (n: number) => n.toString(16).padEnd(64, 'a');
const CT = (n: number) => n.toString(16).padEnd(64, 'c');

function sandbox(n: number, labels: Record<string, string>, state: SandboxRecord['state'] = 'ready'): SandboxRecord {
  return {
    id: SB(n),
    config: { metadata: { name: `pod${n}`, namespace: 'ns', uid: `uid${n}`, attempt: 0 }, labels, annotations: { a: `${n}` } } as unknown as SandboxRecord['config'],
    runtimeHandler: 'vmlet',
    state,
    createdAt: '1',
  };
}

function container(n: number, sandboxId: string, labels: Record<string, string>, state: ContainerRecord['state'], files: string[]): ContainerRecord {
  return {
    id: CT(n),
    sandboxId,
    config: { metadata: { name: 'vm', attempt: 0 }, labels, annotations: { c: `${n}` } } as unknown as ContainerRecord['config'],
    image: 'img',
    imageId: 'sha256:x',
    domainName: `dom${n}`,
    logPath: '',
    consoleLog: '',
    consoleOffset: 0,
    files,
    state,
    createdAt: '1',
    startedAt: '1',
    finishedAt: '0',
    exitCode: 0,
    reason: '',
    message: '',
  };
}

/** A PodManager stand-in: the records, the store root and a scripted VM driver. */
function fakeManager(o: { sandboxes: SandboxRecord[]; containers: ContainerRecord[]; domains: () => VmSample[]; root: string }) {
  const calls = { list: 0, info: 0 };
  const sandboxes = new Map(o.sandboxes.map((s) => [s.id, s]));
  const containers = new Map(o.containers.map((c) => [c.id, c]));
  const vm = {
    async sampleActive(names?: ReadonlySet<string>): Promise<VmSample[]> {
      calls.list++;
      return o.domains().filter((d) => !names || names.has(d.name));
    },
    async sample(name: string): Promise<VmSample> {
      calls.info++;
      const d = o.domains().find((x) => x.name === name);
      if (!d) throw new VmletError('not-found', `info ${name}: Domain not found`);
      return d;
    },
    qemuPid: (): number | undefined => undefined,
  };
  const m = {
    sandboxes,
    containers,
    networks: new Map(),
    store: { root: o.root },
    deps: { vm },
    container: (id: string) => [...containers.values()].find((c) => c.id.startsWith(id)),
    sandbox: (id: string) => [...sandboxes.values()].find((s) => s.id.startsWith(id)),
    mustContainer(id: string) {
      const c = id ? this.container(id) : undefined;
      if (!c) throw new VmletError('not-found', `container ${id} not found`);
      return c;
    },
    mustSandbox(id: string) {
      const s = id ? this.sandbox(id) : undefined;
      if (!s) throw new VmletError('not-found', `pod sandbox ${id} not found`);
      return s;
    },
    containersOf: (sid: string) => [...containers.values()].filter((c) => c.sandboxId === sid),
  };
  return { m: m as unknown as PodManager, calls };
}

const sample = (name: string, cpuTimeNs: number, sampledAtMs: number): VmSample => ({
  name,
  sampledAtMs,
  state: 'running',
  maxMemKiB: 524288,
  memoryKiB: 524288,
  vcpus: 1,
  cpuTimeNs,
});

describe('stats assembly (fake libvirt)', () => {
  function setup() {
    const root = tempDir();
    const overlay = join(root, 'root.qcow2');
    writeFileSync(overlay, 'q'.repeat(4096));
    const s1 = sandbox(1, { app: 'web', tier: 'front' });
    const s2 = sandbox(2, { app: 'db' });
    const s3 = sandbox(3, { app: 'web' }, 'notready');
    const c1 = container(1, s1.id, { role: 'vm', app: 'web' }, 'running', [overlay]);
    const c2 = container(2, s2.id, { role: 'vm' }, 'running', [join(root, 'gone.qcow2')]);
    const c3 = container(3, s2.id, { role: 'old' }, 'exited', []);
    const c4 = container(4, s3.id, { role: 'vm' }, 'created', []);
    let t = 1_700_000_000_000;
    let cpu = 1e9;
    const env = fakeManager({
      sandboxes: [s1, s2, s3],
      containers: [c1, c2, c3, c4],
      root,
      domains: () => [sample('dom1', cpu, t), sample('dom2', 2 * cpu, t), sample('other-runtime-vm', 5, t)],
    });
    const tick = (ms: number, cpuNs: number) => {
      t += ms;
      cpu += cpuNs;
    };
    return { ...env, s1, s2, s3, c1, c2, c3, c4, tick };
  }

  it('filters containers by id, pod and labels (ANDed), and leaves exited ones out of the list', () => {
    const { c1, c2, c3, s2 } = setup();
    expect(containerStatsMatches(c1, null)).toBe(true);
    expect(containerStatsMatches(c1, { id: c1.id.slice(0, 8), pod_sandbox_id: '', label_selector: {} })).toBe(true);
    expect(containerStatsMatches(c1, { id: '', pod_sandbox_id: s2.id, label_selector: {} })).toBe(false);
    expect(containerStatsMatches(c2, { id: '', pod_sandbox_id: s2.id.slice(0, 10), label_selector: { role: 'vm' } })).toBe(true);
    expect(containerStatsMatches(c3, { id: '', pod_sandbox_id: s2.id, label_selector: { role: 'vm' } })).toBe(false);
    expect(containerStatsMatches(c1, { id: c1.id, pod_sandbox_id: '', label_selector: { app: 'db' } })).toBe(false);
  });

  it('filters pods by id and labels', () => {
    const { s1, s2 } = setup();
    expect(sandboxStatsMatches(s1, { id: '', label_selector: { app: 'web' } })).toBe(true);
    expect(sandboxStatsMatches(s2, { id: '', label_selector: { app: 'web' } })).toBe(false);
    expect(sandboxStatsMatches(s1, { id: s2.id, label_selector: {} })).toBe(false);
    expect(sandboxStatsMatches(s1, null)).toBe(true);
  });

  it('ListContainerStats: one list call, attributes, CPU, writable layer; nano cores from the second call', async () => {
    const { m, calls, c1, c2, c4, tick } = setup();
    const first = await listContainerStats(m, null);
    expect(calls).toEqual({ list: 1, info: 0 });
    expect(first.map((x) => x.attributes?.id)).toEqual([c1.id, c2.id, c4.id]); // c3 exited
    const a = first[0]!;
    expect(a.attributes).toEqual({ id: c1.id, metadata: { name: 'vm', attempt: 0 }, labels: { role: 'vm', app: 'web' }, annotations: { c: '1' } });
    expect(a.cpu).toEqual({ timestamp: '1700000000000000000', usage_core_nano_seconds: { value: '1000000000' } });
    expect(Number(a.writable_layer!.used_bytes!.value)).toBeGreaterThan(0);
    expect(a.writable_layer!.inodes_used).toEqual({ value: '1' });
    expect(a.writable_layer!.fs_id!.mountpoint).toMatch(/^\//);
    // No QEMU process behind the fake domains: no memory figures rather than made-up ones.
    expect(a.memory).toBeUndefined();
    expect(first[1]!.writable_layer!.inodes_used).toEqual({ value: '0' });
    // A created container has no domain running: attributes and writable layer only.
    expect(first[2]!.cpu).toBeUndefined();

    tick(2000, 0.5e9);
    const second = await listContainerStats(m, { id: '', pod_sandbox_id: '', label_selector: { role: 'vm' } });
    expect(second.map((x) => x.attributes?.id)).toEqual([c1.id, c2.id, c4.id]);
    expect(second[0]!.cpu).toMatchObject({ usage_core_nano_seconds: { value: '1500000000' }, usage_nano_cores: { value: '250000000' } });
    expect(second[1]!.cpu).toMatchObject({ usage_core_nano_seconds: { value: '3000000000' }, usage_nano_cores: { value: '500000000' } });
  });

  it('ContainerStats: one container by id or prefix, NotFound otherwise, no libvirt call for an exited one', async () => {
    const { m, calls, c1, c3 } = setup();
    const s = await containerStats(m, c1.id.slice(0, 12));
    expect(s.attributes?.id).toBe(c1.id);
    expect(s.cpu?.usage_core_nano_seconds).toEqual({ value: '1000000000' });
    expect(calls).toEqual({ list: 0, info: 1 });
    const old = await containerStats(m, c3.id);
    expect(old.cpu).toBeUndefined();
    expect(old.writable_layer).toBeDefined();
    expect(calls.info).toBe(1);
    await expect(containerStats(m, 'f'.repeat(64))).rejects.toMatchObject({ kind: 'not-found' });
  });

  it('PodSandboxStats / ListPodSandboxStats: pod attributes, summed CPU, containers; stopped pods only by id', async () => {
    const { m, s1, s2, s3, c1, c2, tick } = setup();
    const list = await listPodSandboxStats(m, null);
    expect(list.map((x) => x.attributes?.id)).toEqual([s1.id, s2.id]);
    expect(list[0]!.attributes).toEqual({ id: s1.id, metadata: { name: 'pod1', namespace: 'ns', uid: 'uid1', attempt: 0 }, labels: { app: 'web', tier: 'front' }, annotations: { a: '1' } });
    expect(list[0]!.linux!.containers!.map((c) => c.attributes?.id)).toEqual([c1.id]);
    expect(list[1]!.linux!.containers!.map((c) => c.attributes?.id)).toEqual([c2.id]);
    expect(list[1]!.linux!.cpu).toMatchObject({ usage_core_nano_seconds: { value: '2000000000' } });
    expect(list[1]!.linux!.cpu!.usage_nano_cores).toBeUndefined();
    expect(list[0]!.linux!.network).toBeUndefined(); // no pod network in this fake

    expect((await listPodSandboxStats(m, { id: '', label_selector: { app: 'web' } })).map((x) => x.attributes?.id)).toEqual([s1.id]);
    tick(1000, 1e9);
    const one = await podSandboxStats(m, s2.id.slice(0, 6));
    expect(one.linux!.cpu).toMatchObject({ usage_core_nano_seconds: { value: '4000000000' }, usage_nano_cores: { value: '2000000000' } });
    const stopped = await podSandboxStats(m, s3.id);
    expect(stopped.attributes?.id).toBe(s3.id);
    expect(stopped.linux!.cpu).toBeUndefined();
    await expect(podSandboxStats(m, 'e'.repeat(64))).rejects.toMatchObject({ kind: 'not-found' });
  });

  it('maps a lost libvirt connection to Unavailable', async () => {
    const { m } = setup();
    (m.deps.vm as unknown as { sampleActive: () => Promise<never> }).sampleActive = async () => {
      throw new VmletError('unavailable', 'stats: cannot recv data');
    };
    await expect(listContainerStats(m, null)).rejects.toMatchObject({ kind: 'unavailable' });
  });
});

