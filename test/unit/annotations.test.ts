import { describe, expect, it } from 'vitest';
import { annotationOf, checkMachineForBoot, parsePodAnnotations, parseVmSettings, type VmSettingsInput } from '../../src/vm/annotations.js';
import { invalidArgumentFrom } from '../helpers/errors.js';

const defaults = { vcpus: 1, memoryMiB: 512 };

function parse(pod: Record<string, string> = {}, extra: Partial<VmSettingsInput> = {}) {
  return parseVmSettings({ sandboxAnnotations: pod, containerAnnotations: {}, defaults, ...extra });
}

const rejection = invalidArgumentFrom;

const GiB = 2 ** 30;

describe('defaults', () => {
  it('gives 1 vCPU, 512 MiB, host-passthrough, q35, virtio, bios, no iothreads, serial log on, PVH where the image has it, no VNC display', () => {
    const s = parse();
    expect(s).toEqual({
      vcpus: 1,
      memoryMiB: 512,
      maxVcpus: 1,
      maxMemoryMiB: 512,
      cpuModel: { mode: 'host-passthrough' },
      machine: 'q35',
      diskBus: 'virtio',
      firmware: 'bios',
      ioThreads: 0,
      serialLog: true,
      pvh: true,
      vnc: false,
      sources: {
        vcpus: 'default', memory: 'default', cpuModel: 'default', machine: 'default', diskBus: 'default',
        firmware: 'default', ioThreads: 'default', serialLog: 'default', pvh: 'default', vnc: 'default', maxVcpus: 'default', maxMemory: 'default',
        networkConfig: 'default',
      },
      cloudInit: { scripts: [], sshAuthorizedKeys: [], networkMode: 'both' },
    });
  });

  it('uses the configured defaults', () => {
    expect(parseVmSettings({ sandboxAnnotations: {}, containerAnnotations: {}, defaults: { vcpus: 2, memoryMiB: 1024 } })).toMatchObject({ vcpus: 2, memoryMiB: 1024 });
  });
});

describe('vmlet.io/vcpus', () => {
  it.each([['1', 1], ['4', 4], ['256', 256]])('accepts %s', (v, n) => {
    expect(parse({ 'vmlet.io/vcpus': v })).toMatchObject({ vcpus: n, sources: { vcpus: 'pod annotation vmlet.io/vcpus' } });
  });
  it.each(['0', '257', '-1', '1.5', 'two', '', ' 2', '0x2', '1e2'])('rejects %j naming the annotation and the range', (v) => {
    expect(rejection(() => parse({ 'vmlet.io/vcpus': v })).message).toBe(`annotation vmlet.io/vcpus=${JSON.stringify(v)} is invalid: allowed an integer 1–256`);
  });
});

describe('vmlet.io/memory', () => {
  it.each([
    ['512Mi', 512],
    ['2Gi', 2048],
    ['1G', 954], // 1e9 bytes = 953.67 MiB, rounded up
    ['1.5Gi', 1536],
    ['32Mi', 32],
    ['16Ti', 16 * 1024 * 1024],
    ['1073741824', 1024],
    ['1e9', 954],
  ])('accepts %s as %d MiB', (v, mib) => {
    expect(parse({ 'vmlet.io/memory': v }).memoryMiB).toBe(mib);
  });
  it.each(['31Mi', '17Ti', '0', 'lots', '512m', '-1Gi', '1 Gi', ''])('rejects %j', (v) => {
    const msg = rejection(() => parse({ 'vmlet.io/memory': v })).message;
    expect(msg).toContain(`annotation vmlet.io/memory=${JSON.stringify(v)} is invalid: allowed a Kubernetes quantity from 32Mi to 16Ti`);
  });
});

describe('vmlet.io/cpu-model', () => {
  it('accepts host-passthrough, host-model and a named model', () => {
    expect(parse({ 'vmlet.io/cpu-model': 'host-passthrough' }).cpuModel).toEqual({ mode: 'host-passthrough' });
    expect(parse({ 'vmlet.io/cpu-model': 'host-model' }).cpuModel).toEqual({ mode: 'host-model' });
    expect(parse({ 'vmlet.io/cpu-model': 'Skylake-Client-v4' }).cpuModel).toEqual({ mode: 'custom', model: 'Skylake-Client-v4' });
    expect(parse({ 'vmlet.io/cpu-model': 'qemu64' }).cpuModel).toEqual({ mode: 'custom', model: 'qemu64' });
  });
  it.each(['', 'has space', "x'y", '<x>', 'a'.repeat(65), 'Skylake/Client'])('rejects %j', (v) => {
    expect(rejection(() => parse({ 'vmlet.io/cpu-model': v })).message).toMatch(/^annotation vmlet\.io\/cpu-model=.* is invalid: allowed host-passthrough \| host-model \| a QEMU CPU model name/);
  });
});

describe('vmlet.io/machine', () => {
  it.each(['q35', 'pc', 'microvm'])('accepts %s', (v) => {
    expect(parse({ 'vmlet.io/machine': v }).machine).toBe(v);
  });
  it.each(['Q35', 'pc-q35-7.2', 'virt', ''])('rejects %j', (v) => {
    expect(rejection(() => parse({ 'vmlet.io/machine': v })).message).toBe(`annotation vmlet.io/machine=${JSON.stringify(v)} is invalid: allowed q35 | pc | microvm`);
  });
  it('microvm: only with virtio disks and BIOS', () => {
    expect(rejection(() => parse({ 'vmlet.io/machine': 'microvm', 'vmlet.io/disk-bus': 'scsi' })).message).toMatch(/vmlet\.io\/machine="microvm" needs disk bus virtio.*allowed virtio/);
    expect(rejection(() => parse({ 'vmlet.io/machine': 'microvm', 'vmlet.io/firmware': 'uefi' })).message).toMatch(/vmlet\.io\/machine="microvm" cannot boot UEFI.*allowed bios/);
  });
  it('microvm: only with kernel boot (checkMachineForBoot)', () => {
    const s = parse({ 'vmlet.io/machine': 'microvm' });
    expect(() => checkMachineForBoot(s, 'kernel')).not.toThrow();
    expect(rejection(() => checkMachineForBoot(s, 'disk')).message).toMatch(/^annotation vmlet\.io\/machine="microvm" needs an image that boots a kernel directly.*allowed q35 \| pc/);
    expect(() => checkMachineForBoot(parse({ 'vmlet.io/machine': 'pc' }), 'disk')).not.toThrow();
    expect(() => checkMachineForBoot(parse(), 'disk')).not.toThrow();
  });
});

describe('vmlet.io/disk-bus', () => {
  it.each(['virtio', 'scsi', 'sata'])('accepts %s', (v) => {
    expect(parse({ 'vmlet.io/disk-bus': v }).diskBus).toBe(v);
  });
  it.each(['ide', 'VIRTIO', 'nvme', ''])('rejects %j', (v) => {
    expect(rejection(() => parse({ 'vmlet.io/disk-bus': v })).message).toBe(`annotation vmlet.io/disk-bus=${JSON.stringify(v)} is invalid: allowed virtio | scsi | sata`);
  });
});

describe('vmlet.io/root-disk-size', () => {
  it('is absent unless set; a quantity rounded up to whole sectors', () => {
    expect(parse().rootDiskSizeBytes).toBeUndefined();
    expect(parse({ 'vmlet.io/root-disk-size': '10Gi' }).rootDiskSizeBytes).toBe(10 * GiB);
    expect(parse({ 'vmlet.io/root-disk-size': '1Mi' }).rootDiskSizeBytes).toBe(2 ** 20);
    expect(parse({ 'vmlet.io/root-disk-size': '1G' }).rootDiskSizeBytes).toBe(1e9); // 1e9 is a multiple of 512
    expect(parse({ 'vmlet.io/root-disk-size': '2000001' }).rootDiskSizeBytes).toBe(2000384);
  });
  it.each(['1023Ki', '0', '65Ti', 'big', ''])('rejects %j', (v) => {
    expect(rejection(() => parse({ 'vmlet.io/root-disk-size': v })).message).toContain(`annotation vmlet.io/root-disk-size=${JSON.stringify(v)} is invalid: allowed a Kubernetes quantity from 1Mi to 64Ti`);
  });
});

describe('vmlet.io/kernel-args', () => {
  it('keeps printable text, trimmed', () => {
    expect(parse({ 'vmlet.io/kernel-args': ' loglevel=7 foo="a b" ' }).kernelArgs).toBe('loglevel=7 foo="a b"');
    expect(parse().kernelArgs).toBeUndefined();
  });
  it.each(['', '   ', 'a\nb', 'a\x00b', 'x'.repeat(2049)])('rejects %j', (v) => {
    expect(rejection(() => parse({ 'vmlet.io/kernel-args': v })).message).toMatch(/^annotation vmlet\.io\/kernel-args=.* is invalid: allowed kernel parameters: printable text without control characters, 1–2048 bytes$/);
  });
});

describe('vmlet.io/firmware', () => {
  it.each(['bios', 'uefi'])('accepts %s', (v) => {
    expect(parse({ 'vmlet.io/firmware': v }).firmware).toBe(v);
  });
  it.each(['efi', 'UEFI', ''])('rejects %j', (v) => {
    expect(rejection(() => parse({ 'vmlet.io/firmware': v })).message).toBe(`annotation vmlet.io/firmware=${JSON.stringify(v)} is invalid: allowed bios | uefi`);
  });
});

describe('vmlet.io/hugepages', () => {
  it('accepts 2Mi and 1Gi when memory fits whole pages', () => {
    expect(parse({ 'vmlet.io/hugepages': '2Mi' }).hugepages).toBe('2Mi');
    expect(parse({ 'vmlet.io/hugepages': '1Gi', 'vmlet.io/memory': '2Gi' }).hugepages).toBe('1Gi');
    expect(parse().hugepages).toBeUndefined();
  });
  it.each(['2M', '1G', '4Ki', 'true', ''])('rejects %j', (v) => {
    expect(rejection(() => parse({ 'vmlet.io/hugepages': v })).message).toBe(`annotation vmlet.io/hugepages=${JSON.stringify(v)} is invalid: allowed 2Mi | 1Gi`);
  });
  it('rejects memory that is not a whole number of pages, saying where memory came from', () => {
    const m1 = rejection(() => parse({ 'vmlet.io/hugepages': '1Gi', 'vmlet.io/memory': '1536Mi' })).message;
    expect(m1).toMatch(/annotation vmlet\.io\/hugepages="1Gi" needs guest memory to be a multiple of 1Gi, but memory is 1536 MiB \(from pod annotation vmlet\.io\/memory\)/);
    expect(m1).toContain('allowed a memory size that is a multiple of 1024 MiB');
    expect(rejection(() => parse({ 'vmlet.io/hugepages': '1Gi' })).message).toMatch(/512 MiB \(from default\)/);
    expect(rejection(() => parse({ 'vmlet.io/hugepages': '2Mi', 'vmlet.io/memory': '33Mi' })).message).toMatch(/multiple of 2 MiB/);
  });
});

describe('vmlet.io/io-threads and vmlet.io/serial-log', () => {
  it('io-threads: 0–64', () => {
    expect(parse({ 'vmlet.io/io-threads': '0' }).ioThreads).toBe(0);
    expect(parse({ 'vmlet.io/io-threads': '64' }).ioThreads).toBe(64);
    for (const v of ['65', '-1', 'x', '']) {
      expect(rejection(() => parse({ 'vmlet.io/io-threads': v })).message).toBe(`annotation vmlet.io/io-threads=${JSON.stringify(v)} is invalid: allowed an integer 0–64`);
    }
  });
  it('serial-log: true by default, true | false', () => {
    expect(parse({ 'vmlet.io/serial-log': 'false' }).serialLog).toBe(false);
    expect(parse({ 'vmlet.io/serial-log': 'true' }).serialLog).toBe(true);
    for (const v of ['no', 'False', '0', '']) {
      expect(rejection(() => parse({ 'vmlet.io/serial-log': v })).message).toBe(`annotation vmlet.io/serial-log=${JSON.stringify(v)} is invalid: allowed true | false`);
    }
  });
});

describe('vmlet.io/vnc', () => {
  it('off by default; true | false, from the container or the pod', () => {
    expect(parse({ 'vmlet.io/vnc': 'true' })).toMatchObject({ vnc: true, sources: { vnc: 'pod annotation vmlet.io/vnc' } });
    expect(parse({ 'vmlet.io/vnc': 'false' }).vnc).toBe(false);
    const c = parseVmSettings({ sandboxAnnotations: { 'vmlet.io/vnc': 'false' }, containerAnnotations: { 'vmlet.io/vnc': 'true' }, defaults });
    expect(c).toMatchObject({ vnc: true, sources: { vnc: 'container annotation vmlet.io/vnc' } });
  });
  it.each(['yes', 'True', 'on', '1', '', ' true'])('rejects %j naming the annotation and the values allowed', (v) => {
    expect(rejection(() => parse({ 'vmlet.io/vnc': v })).message).toBe(`annotation vmlet.io/vnc=${JSON.stringify(v)} is invalid: allowed true | false`);
    expect(rejection(() => parseVmSettings({ sandboxAnnotations: {}, containerAnnotations: { 'vmlet.io/vnc': v }, defaults })).message).toContain('annotation vmlet.io/vnc=');
  });
  it('is checked at RunPodSandbox too, before anything is made', () => {
    expect(rejection(() => parsePodAnnotations({ 'vmlet.io/vnc': 'yes' })).message).toBe('annotation vmlet.io/vnc="yes" is invalid: allowed true | false');
    expect(() => parsePodAnnotations({ 'vmlet.io/vnc': 'true' })).not.toThrow();
  });
  it('microvm has no PCI bus for the VGA adapter: refused together', () => {
    expect(rejection(() => parse({ 'vmlet.io/machine': 'microvm', 'vmlet.io/vnc': 'true' })).message).toBe(
      'annotation vmlet.io/machine="microvm" has no PCI bus for the VGA adapter a VNC display needs, but pod annotation vmlet.io/vnc is "true": allowed vmlet.io/vnc "false" or unset',
    );
    expect(parse({ 'vmlet.io/machine': 'microvm', 'vmlet.io/vnc': 'false' }).vnc).toBe(false);
  });
});

describe('precedence: annotation > container resources > sandbox resources > defaults', () => {
  const container = { cpu_quota: '250000', cpu_period: '100000', memory_limit_in_bytes: String(3 * GiB) };
  const sandbox = { cpu_quota: '400000', cpu_period: '100000', memory_limit_in_bytes: String(4 * GiB) };

  it('annotation beats both resources', () => {
    const s = parse({ 'vmlet.io/vcpus': '8', 'vmlet.io/memory': '1Gi' }, { containerResources: container, sandboxResources: sandbox });
    expect(s).toMatchObject({ vcpus: 8, memoryMiB: 1024, sources: { vcpus: 'pod annotation vmlet.io/vcpus', memory: 'pod annotation vmlet.io/memory' } });
  });
  it('container resources beat sandbox resources; quota/period rounds up', () => {
    const s = parse({}, { containerResources: container, sandboxResources: sandbox });
    expect(s).toMatchObject({ vcpus: 3, memoryMiB: 3072, sources: { vcpus: 'container resources', memory: 'container resources' } });
  });
  it('sandbox resources beat defaults', () => {
    const s = parse({}, { containerResources: null, sandboxResources: sandbox });
    expect(s).toMatchObject({ vcpus: 4, memoryMiB: 4096, sources: { vcpus: 'sandbox resources', memory: 'sandbox resources' } });
  });
  it('each setting falls through on its own (0 and -1 mean unset)', () => {
    const s = parse({}, { containerResources: { cpu_quota: '-1', cpu_period: '100000', memory_limit_in_bytes: '0' }, sandboxResources: { memory_limit_in_bytes: String(GiB) } });
    expect(s).toMatchObject({ vcpus: 1, memoryMiB: 1024, sources: { vcpus: 'default', memory: 'sandbox resources' } });
  });
  it('rounds quota/period up: 100m → 1, 1500m → 2, 2000m → 2; numbers work too', () => {
    expect(parse({}, { containerResources: { cpu_quota: '10000', cpu_period: '100000' } }).vcpus).toBe(1);
    expect(parse({}, { containerResources: { cpu_quota: '150000', cpu_period: '100000' } }).vcpus).toBe(2);
    expect(parse({}, { containerResources: { cpu_quota: 200000, cpu_period: 100000 } }).vcpus).toBe(2);
    expect(parse({}, { containerResources: { cpu_quota: '50000', cpu_period: '0' } }).vcpus).toBe(1); // default CFS period
    expect(parse({}, { containerResources: { cpu_quota: '300000' } }).vcpus).toBe(3);
  });
  it('rounds a memory limit up to whole MiB', () => {
    expect(parse({}, { containerResources: { memory_limit_in_bytes: String(GiB + 1) } }).memoryMiB).toBe(1025);
  });
  it('rejects resources outside the VM bounds, naming where they came from', () => {
    expect(rejection(() => parse({}, { containerResources: { cpu_quota: '30000000', cpu_period: '100000' } })).message).toMatch(/^container resources: CPU limit .* needs 300 vCPUs: allowed 1–256 \(set vmlet\.io\/vcpus to override\)/);
    expect(rejection(() => parse({}, { sandboxResources: { memory_limit_in_bytes: String(16 * 2 ** 20) } })).message).toMatch(/^sandbox resources: memory limit 16777216 bytes gives 16 MiB of guest RAM: allowed a Kubernetes quantity from 32Mi to 16Ti/);
    // …unless an annotation overrides them.
    expect(parse({ 'vmlet.io/vcpus': '2' }, { containerResources: { cpu_quota: '30000000', cpu_period: '100000' } }).vcpus).toBe(2);
  });
});

describe('max-vcpus and max-memory (headroom for live resizing)', () => {
  it('default to the VM size, whatever it came from', () => {
    expect(parse({}, { containerResources: { cpu_quota: '250000', memory_limit_in_bytes: String(GiB) } })).toMatchObject({ vcpus: 3, maxVcpus: 3, memoryMiB: 1024, maxMemoryMiB: 1024 });
  });
  it('raise the maxima above the size', () => {
    expect(parse({ 'vmlet.io/max-vcpus': '4', 'vmlet.io/max-memory': '2Gi' }, { containerResources: { cpu_quota: '100000', memory_limit_in_bytes: String(GiB) } })).toMatchObject({
      vcpus: 1, maxVcpus: 4, memoryMiB: 1024, maxMemoryMiB: 2048,
    });
  });
  it('cannot be below the size, naming where the size came from', () => {
    expect(rejection(() => parse({ 'vmlet.io/vcpus': '2', 'vmlet.io/max-vcpus': '1' })).message).toBe(
      'annotation vmlet.io/max-vcpus="1" is invalid: allowed an integer 2–256: at least the VM\'s 2 vCPUs (from pod annotation vmlet.io/vcpus)',
    );
    expect(rejection(() => parse({ 'vmlet.io/max-memory': '256Mi' }, { containerResources: { memory_limit_in_bytes: String(GiB) } })).message).toMatch(
      /^annotation vmlet\.io\/max-memory="256Mi" is invalid: allowed a Kubernetes quantity .*, and at least the VM's 1024 MiB \(from container resources\)$/,
    );
    expect(rejection(() => parse({ 'vmlet.io/max-vcpus': 'many' })).message).toMatch(/^annotation vmlet\.io\/max-vcpus="many" is invalid/);
  });
  it('max-memory cannot grow hugepage-backed memory; microvm cannot hotplug vCPUs', () => {
    expect(rejection(() => parse({ 'vmlet.io/hugepages': '2Mi', 'vmlet.io/max-memory': '1Gi' })).message).toMatch(/cannot be combined with vmlet\.io\/hugepages: hugepage-backed guest memory cannot be ballooned/);
    expect(parse({ 'vmlet.io/hugepages': '2Mi', 'vmlet.io/max-memory': '512Mi' }).maxMemoryMiB).toBe(512);
    expect(rejection(() => parse({ 'vmlet.io/machine': 'microvm', 'vmlet.io/max-vcpus': '2' })).message).toMatch(/"microvm" has no ACPI CPU hotplug.*allowed vmlet\.io\/max-vcpus unset or 1$/);
  });
});

describe('container annotations win over pod annotations', () => {
  it('per setting', () => {
    const s = parseVmSettings({
      sandboxAnnotations: { 'vmlet.io/vcpus': '2', 'vmlet.io/machine': 'pc' },
      containerAnnotations: { 'vmlet.io/vcpus': '6' },
      defaults,
    });
    expect(s).toMatchObject({ vcpus: 6, machine: 'pc', sources: { vcpus: 'container annotation vmlet.io/vcpus', machine: 'pod annotation vmlet.io/machine' } });
  });
  it('a bad container annotation is reported as such', () => {
    expect(rejection(() => parseVmSettings({ sandboxAnnotations: {}, containerAnnotations: { 'vmlet.io/vcpus': '0' }, defaults })).message).toBe('annotation vmlet.io/vcpus="0" is invalid: allowed an integer 1–256');
  });
});

describe("Virtlet's annotation names", () => {
  it('are accepted as aliases', () => {
    const s = parse({ VirtletVCPUCount: '3', VirtletDiskDriver: 'scsi', VirtletRootVolumeSize: '4Gi', VirtletCPUModel: 'host-model' });
    expect(s).toMatchObject({
      vcpus: 3,
      diskBus: 'scsi',
      rootDiskSizeBytes: 4 * GiB,
      cpuModel: { mode: 'host-model' },
      sources: { vcpus: 'pod annotation VirtletVCPUCount', diskBus: 'pod annotation VirtletDiskDriver', rootDiskSize: 'pod annotation VirtletRootVolumeSize', cpuModel: 'pod annotation VirtletCPUModel' },
    });
  });
  it('lose to the vmlet.io name when both are set', () => {
    const s = parse({ VirtletVCPUCount: '3', 'vmlet.io/vcpus': '5', VirtletDiskDriver: 'scsi', 'vmlet.io/disk-bus': 'sata' });
    expect(s).toMatchObject({ vcpus: 5, diskBus: 'sata', sources: { vcpus: 'pod annotation vmlet.io/vcpus' } });
  });
  it('are named in errors when they were the source, with the values Virtlet allowed', () => {
    expect(rejection(() => parse({ VirtletVCPUCount: '0' })).message).toBe('annotation VirtletVCPUCount="0" is invalid: allowed an integer 1–256');
    expect(rejection(() => parse({ VirtletDiskDriver: 'sata' })).message).toBe('annotation VirtletDiskDriver="sata" is invalid: allowed virtio | scsi');
    expect(rejection(() => parse({ VirtletRootVolumeSize: 'huge' })).message).toMatch(/^annotation VirtletRootVolumeSize="huge" is invalid: allowed a Kubernetes quantity/);
    expect(rejection(() => parse({ VirtletCPUModel: 'Skylake' })).message).toBe('annotation VirtletCPUModel="Skylake" is invalid: allowed host-model');
  });
  it('a bad alias is ignored when the vmlet.io name wins', () => {
    expect(parse({ VirtletVCPUCount: 'junk', 'vmlet.io/vcpus': '2' }).vcpus).toBe(2);
  });
  it('annotationOf names the alias that was used', () => {
    expect(annotationOf(parse({ VirtletCPUModel: 'host-model' }), 'cpuModel')).toBe('VirtletCPUModel');
    expect(annotationOf(parse(), 'machine')).toBe('vmlet.io/machine');
  });
});

describe('unknown vmlet.io/ annotations', () => {
  it('are rejected listing the known ones (typos)', () => {
    const msg = rejection(() => parse({ 'vmlet.io/vcpu': '2' })).message;
    expect(msg).toMatch(/^unknown pod annotation vmlet\.io\/vcpu: known vmlet\.io annotations are /);
    for (const k of ['vmlet.io/vcpus', 'vmlet.io/memory', 'vmlet.io/cpu-model', 'vmlet.io/machine', 'vmlet.io/disk-bus', 'vmlet.io/root-disk-size', 'vmlet.io/kernel-args', 'vmlet.io/firmware', 'vmlet.io/hugepages', 'vmlet.io/io-threads', 'vmlet.io/serial-log', 'vmlet.io/vnc']) {
      expect(msg).toContain(k);
    }
    expect(rejection(() => parseVmSettings({ sandboxAnnotations: {}, containerAnnotations: { 'vmlet.io/Memory': '1Gi' }, defaults })).message).toMatch(/^unknown container annotation vmlet\.io\/Memory/);
  });
  it('so no annotation can pick the domain type: KVM comes from the node only', () => {
    expect(rejection(() => parse({ 'vmlet.io/hypervisor': 'kvm' })).message).toMatch(/^unknown pod annotation vmlet\.io\/hypervisor/);
    expect(Object.keys(parse())).not.toContain('domainType');
  });
  it('other prefixes are left alone', () => {
    expect(() => parse({ 'kubectl.kubernetes.io/last-applied-configuration': '{}', 'example.com/vcpus': 'x', 'vmlet.io.example/x': 'y', Virtlet: 'x' })).not.toThrow();
  });
  it('the cloud-init annotations are known too: one parser reads them all', () => {
    expect(() => parse({ 'vmlet.io/user-data': '#cloud-config', 'vmlet.io/network-config': 'dhcp', 'vmlet.io/meta-data': '', 'vmlet.io/ssh-authorized-keys': '' })).not.toThrow();
    expect(rejection(() => parse({ 'vmlet.io/cloud-init-user-data': '#cloud-config' })).message).toMatch(/^unknown pod annotation vmlet\.io\/cloud-init-user-data: known .*vmlet\.io\/user-data/);
  });
});
